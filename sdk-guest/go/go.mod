module github.com/bosun-dev/bosun/sdk-guest/go

go 1.24
