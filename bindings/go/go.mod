module github.com/llmr/llmr/bindings/go

go 1.23
