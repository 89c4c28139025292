package sim

import "context"

// The scheduler. Each thing a process does (handle a message, sweep,
// reconcile, take a webhook) is a task on a goroutine of its own, but only
// one task runs at a time: a task parks at every PG call, and the schedule
// picks what runs next, a new task or any parked one. So two processes can
// be in the middle of one charge at once, their steps interleaved at every
// call to the PG, and the run is still one sequence of steps that a seed
// replays exactly.
//
// A task may also wait for another: a call queued for the store's next
// group-commit flush waits for the task that sends it (block). The
// schedule never resumes a task that waits until what it waits for is
// done, so the flush runs first.

// task is one thing a process does.
type task struct {
	name   string
	in     *instance
	resume chan struct{}
	parked chan bool // true: parked at a PG call; false: finished
	// waitDone and waitCtx, while the task blocks, are what may let it go
	// on: done closed or ctx done.
	waitDone <-chan struct{}
	waitCtx  context.Context
}

// ready reports whether t may run: it does not wait, or what it waits for
// is done.
func (t *task) ready() bool {
	if t.waitDone == nil {
		return true
	}
	return done(t.waitCtx, t.waitDone)
}

func done(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
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

// block parks the running task until ch is closed or ctx is done, even
// once faults have stopped: a call queued for a group-commit flush waits
// there while the schedule runs the rest. Outside a task, the tasks run
// until then.
func (w *World) block(ctx context.Context, ch <-chan struct{}) {
	t := w.current
	if t == nil {
		for !done(ctx, ch) {
			w.run(w.firstReady())
		}
		return
	}
	w.Stats["group_queued"]++
	w.logf("      %s's %s queues for the next flush", t.in.name, t.name)
	t.waitDone, t.waitCtx = ch, ctx
	t.parked <- true
	<-t.resume
	t.waitDone, t.waitCtx = nil, nil
}

// finish runs t until it ends, and while it waits, what it waits for.
func (w *World) finish(t *task) {
	for w.has(t) {
		if t.ready() {
			w.run(t)
		} else {
			w.run(w.firstReady())
		}
	}
}

// ready returns the tasks that may run.
func (w *World) ready() []*task {
	var out []*task
	for _, t := range w.tasks {
		if t.ready() {
			out = append(out, t)
		}
	}
	return out
}

// firstReady returns the first task that may run. Some task always may:
// a call only queues behind a flush that a task is sending.
func (w *World) firstReady() *task {
	ts := w.ready()
	if len(ts) == 0 {
		panic("sim: every task waits for another")
	}
	return ts[0]
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
	ts := w.ready()
	if len(ts) == 0 {
		return
	}
	t := ts[w.pick(len(ts))]
	w.logf("resume %s on %s", t.name, t.in.name)
	w.run(t)
}

// finishAll runs every task to its end.
func (w *World) finishAll() {
	for len(w.tasks) > 0 {
		w.finish(w.tasks[0])
	}
}
