package detect

// UseFused turns the fused pass on or off (where pairs.Fast allows it)
// until the returned func restores it.
func UseFused(on bool) (restore func()) {
	old := fused
	fused = on
	return func() { fused = old }
}

// UseAnchor turns looking for the one user watched without a key by its
// name on or off until the returned func restores it.
func UseAnchor(on bool) (restore func()) {
	old := anchoring
	anchoring = on
	return func() { anchoring = old }
}

// UseBlocks turns the Splitter's framing from blocks' bits on or off
// until the returned func restores it.
func UseBlocks(on bool) (restore func()) {
	old := blocks
	blocks = on
	return func() { blocks = old }
}

// UserNameAfter is the first userName value in b, as the prefilter reads
// an identity's.
func UserNameAfter(b []byte) []byte {
	v, _ := valueAfter(b, userNameKey, userNameByte)
	return v
}

// ByteShare is the table of each byte's share of CloudTrail's JSON.
func ByteShare() [256]uint16 { return byteShare }
