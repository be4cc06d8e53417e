module zonelabeler

go 1.24

require github.com/bosun-dev/bosun/sdk-guest/go v0.0.0

replace github.com/bosun-dev/bosun/sdk-guest/go => ../../../../../sdk-guest/go
