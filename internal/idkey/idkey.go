// Package idkey bounds identifiers that become keys: an alert's key in the
// state store (bbolt refuses keys over 32 KiB), an Elasticsearch _id (at
// most 512 bytes). Record content decides those identifiers, and a forged
// record can make them as long as it likes: an identifier within the bound
// is kept as it is, a longer one becomes its head and a digest of the whole,
// so it stays unique, readable and within the bound.
package idkey

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// Max is the bound the plugin uses everywhere: Elasticsearch's _id limit,
// and short enough that the store's pages hold many keys.
const Max = 512

// marker starts the digest. An identifier that holds it is digested too,
// whatever its length, so a digested identifier can never equal one kept
// as it is.
const marker = "~sha256:"

const digestLen = len(marker) + 2*sha256.Size

// Bounded is id when it is valid UTF-8 of at most max bytes without the
// marker; otherwise the longest valid UTF-8 head of id that leaves room,
// then the marker and id's SHA-256 in hex. max must leave room for the
// digest (72 bytes).
func Bounded(id string, max int) string {
	if len(id) <= max && utf8.ValidString(id) && !strings.Contains(id, marker) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	// A character cut in two, or anything not UTF-8, is dropped: the result
	// goes into JSON as it is.
	head := strings.ToValidUTF8(id[:min(len(id), max-digestLen)], "")
	return head + marker + hex.EncodeToString(sum[:])
}
