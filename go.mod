module github.com/esmill/esmill

go 1.26
