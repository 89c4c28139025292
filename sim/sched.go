package sim

// The scheduler. Each thing a process does (handle a message, sweep,
// reconcile, take a webhook) is a task on a goroutine of its own, but only
// one task runs at a time: a task parks at every PG call, and the schedule
// picks what runs next, a new task or any parked one. So two processes can
// be in the middle of one charge at once, their steps interleaved at every
// call to the PG, and the run is still one sequence of steps that a seed
// replays exactly.

// task is one thing a process does.
type task struct {
	name   string
	in     *instance
	resume chan struct{}
	parked chan bool // true: parked at a PG call; false: finished
}

// spawnTask starts fn as a task of in and runs it until it parks or ends.
func (w *World) spawnTask(in *instance, name string, fn func()) {
	t := &task{name: name, in: in, resume: make(chan struct{}), parked: make(chan bool)}
	w.tasks = append(w.tasks, t)
	go func() {
		<-t.resume
		defer func() { t.parked <- false }()
		fn()
	}()
	w.run(t)
}

// run lets t go until it parks or ends.
func (w *World) run(t *task) {
	prev := w.current
	w.current = t
	t.resume <- struct{}{}
	more := <-t.parked
	w.current = prev
	if !more {
		for i, x := range w.tasks {
			if x == t {
				w.tasks = append(w.tasks[:i:i], w.tasks[i+1:]...)
				break
			}
		}
	}
}

// park hands control back to the schedule from the running task, at a PG
// call, until the task is picked again. Outside a task, or once faults
// have stopped, it returns at once.
func (w *World) park() {
	t := w.current
	if t == nil || !w.faults {
		return
	}
	t.parked <- true
	<-t.resume
}

// finish runs t until it ends.
func (w *World) finish(t *task) {
	for w.has(t) {
		w.run(t)
	}
}

func (w *World) has(t *task) bool {
	for _, x := range w.tasks {
		if x == t {
			return true
		}
	}
	return false
}

// stepResume lets a parked task go on.
func (w *World) stepResume() {
	if len(w.tasks) == 0 {
		return
	}
	t := w.tasks[w.pick(len(w.tasks))]
	w.logf("resume %s on %s", t.name, t.in.name)
	w.run(t)
}

// finishAll runs every task to its end.
func (w *World) finishAll() {
	for len(w.tasks) > 0 {
		w.finish(w.tasks[0])
	}
}
