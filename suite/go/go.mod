module uffdc-go

go 1.24
