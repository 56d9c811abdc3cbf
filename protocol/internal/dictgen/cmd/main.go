// Command dictgen trains Switchboard's compression dictionary on a corpus of
// generated frames and writes it in zstd's dictionary format:
//
//	go run ./protocol/internal/dictgen/cmd -o protocol/dict/v1.bin
//
// The output depends only on the flags and the protocol package's encoders:
// running it again writes the same bytes. A dictionary is part of the wire
// protocol, so a different output (new flags, changed encoders) must ship
// under a new dictionary id, never replace a published one.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"log"
	"os"

	"switchboard/protocol/internal/dictgen"
)

func main() {
	out := flag.String("o", "dict/v1.bin", "output file")
	n := flag.Int("n", 4000, "training payloads")
	size := flag.Int("size", 32<<10, "dictionary content, bytes")
	seg := flag.Int("seg", 64, "COVER segment length, bytes")
	seed := flag.Uint64("seed", dictgen.TrainSeed, "corpus seed")
	flag.Parse()

	samples := dictgen.New(*seed).Corpus(*n)
	total := 0
	for _, s := range samples {
		total += len(s)
	}
	content := dictgen.TrainContent(samples, *size, *seg)
	d, err := dictgen.BuildZstd(content, samples)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, d, 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d bytes (%d of content) from %d payloads of %d bytes, sha256 %x\n",
		*out, len(d), len(content), len(samples), total, sha256.Sum256(d))
}
