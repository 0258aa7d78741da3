package instance

import "sync"

// Numbering numbers the instances of the process as Fluent Bit does, in
// the order they start, counting from 0 again once none is running. A hot
// reload exits every instance and starts the new configuration's in the
// same process, where the .so stays loaded: counting on would name them
// .2, .3, ... and move their metrics to new labels.
type Numbering struct {
	mu         sync.Mutex
	next, live int
}

// Start numbers an instance that starts.
func (n *Numbering) Start() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.live == 0 {
		n.next = 0
	}
	n.live++
	n.next++
	return n.next - 1
}

// Exit is called when an instance exits or fails to start.
func (n *Numbering) Exit() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.live--
}
