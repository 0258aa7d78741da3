// Package bulkrecv is an Elasticsearch _bulk endpoint for tests: it takes
// `create` actions the way Elasticsearch does (a document whose _id exists
// is refused with 409, nothing is indexed twice), answers with per-item
// statuses, and can be down (503) on demand.
package bulkrecv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
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
	type result struct {
		ID     string `json:"_id"`
		Status int    `json:"status"`
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
		if _, exists := s.docs[create.ID]; exists {
			s.conflicts++
			status = http.StatusConflict
			failed = true
		} else {
			s.docs[create.ID] = doc
			s.order = append(s.order, create.ID)
		}
		s.mu.Unlock()
		items = append(items, map[string]result{"create": {ID: create.ID, Status: status}})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"took": 1, "errors": failed, "items": items})
}
