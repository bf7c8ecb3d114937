package packer

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// compressPayload compresses a v2 payload for PayloadTypeZstd. zstd's
// fastest level compresses a spec best: most of a large spec is hex
// checksums, whose entropy coding the higher levels trade for matches
// that cost more (measured on 10,000 entries: 725 kB fastest, 779 kB
// default, 816 kB best). The output is deterministic for a given input.
func compressPayload(payload []byte) []byte {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		panic(fmt.Sprintf("zstd encoder options: %v", err)) // constant options
	}
	defer enc.Close()
	return enc.EncodeAll(payload, make([]byte, 0, len(payload)/3))
}

// decompressPayload decompresses a PayloadTypeZstd payload: at most
// MaxPayloadSize bytes, with a window of at most that size, whatever the
// frame headers claim, so a hostile payload (a decompression bomb, a frame
// that asks for a huge window) costs at most that much memory.
func decompressPayload(payload []byte) ([]byte, error) {
	dec, err := zstd.NewReader(bytes.NewReader(payload),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(MaxPayloadSize),
		zstd.WithDecoderMaxMemory(MaxPayloadSize),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	plain, err := io.ReadAll(io.LimitReader(dec, MaxPayloadSize+1))
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), err == nil && len(plain) > MaxPayloadSize:
		return nil, fmt.Errorf("the payload decompresses to more than %d bytes", MaxPayloadSize)
	case errors.Is(err, zstd.ErrWindowSizeExceeded):
		return nil, fmt.Errorf("the payload asks for a window of more than %d bytes", MaxPayloadSize)
	case err != nil:
		return nil, fmt.Errorf("invalid zstd data: %w", err)
	}
	if len(plain) == 0 {
		return nil, fmt.Errorf("the payload decompresses to nothing")
	}
	return plain, nil
}
