//go:build !goexperiment.jsonv2

// gojson-oracle writes what the0's Go runtime writes as BOT_CONFIG: json.Marshal of the bot's
// config decoded into the Go types the0 decodes it into (mongo-go-driver v1 into a
// map[string]interface{}: BSON double → float64, int32 → int32, int64 → int64, string →
// string, bool, null → nil, embedded documents → map[string]interface{}, arrays →
// []interface{}). The tests compare worker/core/gojson.py with it. Standard library only.
// (The build tag: encoding/json v1 as Go 1.24 has it, not the jsonv2 experiment.)
//
// Input: one document a line, every value typed, so nothing is left to a JSON number's
// guesswork and a user's "$"-key can never read as a tag:
//
//	null, true, false, "text"     themselves
//	{"double": "0x1.8p+1"}        float64 (hex: exact, subnormals and -0 included)
//	{"int32": "5"}, {"int64": "5"}
//	{"bytes": "<base64>"}         a string of raw bytes (invalid UTF-8 included)
//	{"array": [value, ...]}
//	{"document": [[key, value], ...]}   key: "text" or {"bytes": ...}
//
// Output: json.Marshal of each line's document, a line each; where Marshal refuses (NaN,
// infinities), "!" and its error instead. A malformed input line stops it with exit status 1
// and the line's number.
//
// Usage: gojson-oracle <corpus.jsonl >marshalled.txt
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	for number := 1; ; number++ {
		line, readErr := in.ReadBytes('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			fail(number, readErr)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			config, err := decodeLine(line)
			if err != nil {
				fail(number, err)
			}
			text, err := json.Marshal(config) // what the0's podgen does with bot.Config
			if err != nil {
				text = []byte("!" + err.Error()) // no JSON text starts with "!"
			}
			out.Write(text)
			out.WriteByte('\n')
		}
		if readErr != nil {
			break
		}
	}
	if err := out.Flush(); err != nil {
		fail(0, err)
	}
}

func fail(line int, err error) {
	fmt.Fprintf(os.Stderr, "gojson-oracle: line %d: %v\n", line, err)
	os.Exit(1)
}

func decodeLine(line []byte) (map[string]interface{}, error) {
	var wire interface{}
	if err := json.Unmarshal(line, &wire); err != nil {
		return nil, err
	}
	value, err := decode(wire)
	if err != nil {
		return nil, err
	}
	config, ok := value.(map[string]interface{})
	if !ok {
		return nil, errors.New("a line must be a document")
	}
	return config, nil
}

func decode(wire interface{}) (interface{}, error) {
	switch v := wire.(type) {
	case nil, bool, string:
		return v, nil
	case map[string]interface{}:
		if len(v) != 1 {
			return nil, fmt.Errorf("a typed value has one tag, not %d", len(v))
		}
		for tag, body := range v {
			return decodeTagged(tag, body)
		}
	}
	return nil, fmt.Errorf("untyped value %v", wire)
}

// The scalar tags: each reads its text into the Go type the0's decoding gives that BSON type.
var scalars = map[string]func(string) (interface{}, error){
	"double": func(text string) (interface{}, error) { return strconv.ParseFloat(text, 64) },
	"int32": func(text string) (interface{}, error) {
		n, err := strconv.ParseInt(text, 10, 32)
		return int32(n), err
	},
	"int64": func(text string) (interface{}, error) { return strconv.ParseInt(text, 10, 64) },
	"bytes": func(text string) (interface{}, error) {
		raw, err := base64.StdEncoding.DecodeString(text)
		return string(raw), err
	},
}

func decodeTagged(tag string, body interface{}) (interface{}, error) {
	switch tag {
	case "array":
		return decodeArray(body)
	case "document":
		return decodeDocument(body)
	}
	scalar, known := scalars[tag]
	if !known {
		return nil, fmt.Errorf("unknown tag %q", tag)
	}
	text, ok := body.(string)
	if !ok {
		return nil, fmt.Errorf("%s: not a string", tag)
	}
	return scalar(text)
}

func decodeArray(body interface{}) ([]interface{}, error) {
	items, ok := body.([]interface{})
	if !ok {
		return nil, errors.New("array: not a list")
	}
	array := make([]interface{}, len(items))
	for i, item := range items {
		value, err := decode(item)
		if err != nil {
			return nil, err
		}
		array[i] = value
	}
	return array, nil
}

func decodeDocument(body interface{}) (map[string]interface{}, error) {
	pairs, ok := body.([]interface{})
	if !ok {
		return nil, errors.New("document: not a list of pairs")
	}
	document := make(map[string]interface{}, len(pairs))
	for _, p := range pairs {
		pair, ok := p.([]interface{})
		if !ok || len(pair) != 2 {
			return nil, errors.New("document: a pair is [key, value]")
		}
		key, err := decode(pair[0])
		if err != nil {
			return nil, err
		}
		name, ok := key.(string)
		if !ok {
			return nil, errors.New("document: a key is a string")
		}
		value, err := decode(pair[1])
		if err != nil {
			return nil, err
		}
		document[name] = value
	}
	return document, nil
}
