package engine

// connBlockLen is the number of connections per block of a connList: a
// 4 KiB block, which is a malloc size class.
const connBlockLen = 512

type connBlock [connBlockLen]*Conn

// connList holds a loop's connections for its sweeps, indexed by
// Conn.slot, in fixed-size blocks. Growing it copies nothing and leaves no
// garbage: a slice that grows by appending allocates about four times its
// final size on the way to 15k connections, all of it garbage that the heap
// keeps until a collection. Removing is O(1): the last connection moves
// into the hole. An emptied block is freed once a second one behind it is
// empty too, so that churn at a block's edge does not allocate every time.
// Loop only.
type connList struct {
	blocks []*connBlock
	n      int
}

// len returns the number of connections.
func (cl *connList) len() int { return cl.n }

// at returns the connection in slot i, which must be below len.
func (cl *connList) at(i int) *Conn { return cl.blocks[i/connBlockLen][i%connBlockLen] }

// add appends c and records its slot.
func (cl *connList) add(c *Conn) {
	if cl.n == len(cl.blocks)*connBlockLen {
		cl.blocks = append(cl.blocks, new(connBlock))
	}
	c.slot = int32(cl.n)
	cl.blocks[cl.n/connBlockLen][cl.n%connBlockLen] = c
	cl.n++
}

// remove drops c, if it is in the list, by moving the last connection into
// its slot.
func (cl *connList) remove(c *Conn) {
	i := int(c.slot)
	if i < 0 || i >= cl.n || cl.at(i) != c {
		return
	}
	last := cl.n - 1
	moved := cl.at(last)
	cl.blocks[i/connBlockLen][i%connBlockLen] = moved
	moved.slot = int32(i)
	cl.blocks[last/connBlockLen][last%connBlockLen] = nil
	cl.n = last
	c.slot = -1
	// Keep at most one empty block beyond the last connection.
	if used := (cl.n + connBlockLen - 1) / connBlockLen; len(cl.blocks) > used+1 {
		cl.blocks[len(cl.blocks)-1] = nil
		cl.blocks = cl.blocks[:len(cl.blocks)-1]
	}
}
