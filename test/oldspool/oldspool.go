// Package oldspool writes the Spool_Dir format of earlier versions (layout
// 1), for the tests of the upgrade that takes its alerts over.
package oldspool

import (
	"encoding/binary"
	"hash/crc32"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Record is one record of alerts.spool:
// [len][CRC-32C][msgpack [EventTime, key, JSON, msgpack]].
func Record(key string, js, mp []byte, at time.Time) []byte {
	p := msgp.AppendArrayHeader(nil, 4)
	p = value.AppendEventTime(p, at)
	p = msgp.AppendString(p, key)
	p = msgp.AppendBytes(p, js)
	p = msgp.AppendBytes(p, mp)
	b := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)))
	return append(b, p...)
}
