module bosun.dev/peers

go 1.24
