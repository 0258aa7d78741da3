package cloudtrail

import "strings"

// authorizationMarker introduces the authorization id IAM's newer
// access-denied messages end with: "... policy: arn:... . Go to https://...
// for complete details, or call the GetRequestAuthorizationDetails API
// with the following authorization id: <id>".
const authorizationMarker = "with the following authorization id: "

// maxAuthorizationID bounds what is taken for an id: the ids AWS writes
// are a few dozen characters; the message is the caller's input too.
const maxAuthorizationID = 128

// AuthorizationID is the authorization id an access-denied error message
// gives for IAM's GetRequestAuthorizationDetails, "" when it gives none.
// Only letters and digits are taken (the API's pattern is lower-case
// letters and digits; AWS's own examples write EXAMPLE in capitals), so
// the id is safe to paste into a command.
func (e *Event) AuthorizationID() string {
	i := strings.LastIndex(e.ErrorMessage, authorizationMarker)
	if i < 0 {
		return ""
	}
	rest := e.ErrorMessage[i+len(authorizationMarker):]
	n := 0
	for n < len(rest) && n <= maxAuthorizationID && isAlnum(rest[n]) {
		n++
	}
	if n == 0 || n > maxAuthorizationID {
		return ""
	}
	return rest[:n]
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
