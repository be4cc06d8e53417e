module bosun.dev/kruise-hash

go 1.23
