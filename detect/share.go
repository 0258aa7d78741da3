package detect

// byteShare is how many of every 100,000 bytes of CloudTrail's JSON are
// each byte (the corpus's events; TestByteShareIsTheCorpus counts them
// again): the walk looks for a watched user's name by the pair of its
// neighbouring bytes that is rarest there.
var byteShare = [256]uint16{
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1810, 0, 10692, 3, 0, 0, 0, 4, 23, 23, 20, 8, 2549, 1639, 1180, 461,
	2191, 3274, 2162, 1387, 1061, 989, 840, 742, 813, 788, 4396, 22, 2, 3, 3, 0,
	2, 1303, 141, 441, 468, 422, 131, 73, 105, 1159, 44, 158, 195, 287, 318, 198,
	393, 35, 403, 590, 477, 85, 166, 119, 174, 38, 140, 98, 594, 98, 0, 421,
	0, 4655, 774, 2502, 2238, 8108, 785, 713, 314, 2763, 40, 255, 1802, 1727, 3952, 2898,
	1501, 173, 3454, 4348, 4337, 2047, 877, 736, 251, 803, 266, 637, 0, 637, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
}

// rarestByte is the place in text of its rarest byte in CloudTrail, the
// one hopping looks for.
func rarestByte(text []byte) int {
	at := 0
	for i, c := range text {
		if byteShare[c] < byteShare[text[at]] {
			at = i
		}
	}
	return at
}

// rarestPair is the place in text (two bytes or more) of its pair of
// neighbours rarest in CloudTrail, taking each byte's share as apart
// from its neighbour's: the one the vectorised sweep looks for.
func rarestPair(text []byte) int {
	at, least := 0, ^uint32(0)
	for i := 0; i+1 < len(text); i++ {
		if p := uint32(byteShare[text[i]]) * uint32(byteShare[text[i+1]]); p < least {
			at, least = i, p
		}
	}
	return at
}
