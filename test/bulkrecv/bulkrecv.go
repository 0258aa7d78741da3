// Package bulkrecv is an Elasticsearch _bulk endpoint for tests: it takes
// `create` actions the way Elasticsearch does (a document whose _id exists
// is refused with 409, nothing is indexed twice), answers with per-item
// statuses, can be down (503) on demand, and can refuse chosen documents
// for good (400, as a mapping error).
package bulkrecv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// Server is a running endpoint; URL is its base, post to URL+"/_bulk".
type Server struct {
	*httptest.Server
	mu        sync.Mutex
	docs      map[string]map[string]any // by _id
	order     []string
	creates   int // create actions received
	conflicts int // of which refused as existing
	requests  int
	down      bool
	refuse    func(id string, doc map[string]any) bool
	refused   map[string]int // refusals by _id
}

// Start serves until the test ends.
func Start(t testing.TB) *Server {
	s := &Server{docs: map[string]map[string]any{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.bulk))
	t.Cleanup(s.Close)
	return s
}

// SetDown makes every request fail with 503 (true) or be served (false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Refuse makes the endpoint answer 400 mapper_parsing_exception to every
// create action whose document refuse picks, as Elasticsearch does to a
// document its mapping cannot take; nil takes everything again.
func (s *Server) Refuse(refuse func(id string, doc map[string]any) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = refuse
}

// Refused reports how many times each _id was refused.
func (s *Server) Refused() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for id, n := range s.refused {
		out[id] = n
	}
	return out
}

// Docs returns the indexed documents in the order they were created.
func (s *Server) Docs() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]map[string]any, len(s.order))
	for i, id := range s.order {
		out[i] = s.docs[id]
	}
	return out
}

// IDs returns the _ids of the indexed documents, in the order they were
// created.
func (s *Server) IDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order)
}

// Counts reports create actions received and how many were conflicts.
func (s *Server) Counts() (creates, conflicts, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates, s.conflicts, s.requests
}

func (s *Server) bulk(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, `{"error":"unavailable","status":503}`, http.StatusServiceUnavailable)
		return
	}
	type failure struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	type result struct {
		ID     string   `json:"_id"`
		Status int      `json:"status"`
		Error  *failure `json:"error,omitempty"`
	}
	var items []map[string]result
	failed := false
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var action map[string]struct {
			ID string `json:"_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || len(action) != 1 {
			http.Error(w, fmt.Sprintf(`{"error":"bad action line: %v"}`, err), http.StatusBadRequest)
			return
		}
		create, ok := action["create"]
		if !ok || !sc.Scan() {
			http.Error(w, `{"error":"only create actions with a document"}`, http.StatusBadRequest)
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			http.Error(w, `{"error":"bad document"}`, http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.creates++
		status := http.StatusCreated
		var why *failure
		if _, exists := s.docs[create.ID]; s.refuse != nil && s.refuse(create.ID, doc) && !exists {
			if s.refused == nil {
				s.refused = map[string]int{}
			}
			s.refused[create.ID]++
			status, failed = http.StatusBadRequest, true
			why = &failure{Type: "mapper_parsing_exception", Reason: "failed to parse field [user_agent] of type [keyword]"}
		} else if exists {
			s.conflicts++
			status = http.StatusConflict
			failed = true
		} else {
			s.docs[create.ID] = doc
			s.order = append(s.order, create.ID)
		}
		s.mu.Unlock()
		items = append(items, map[string]result{"create": {ID: create.ID, Status: status, Error: why}})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"took": 1, "errors": failed, "items": items})
}
