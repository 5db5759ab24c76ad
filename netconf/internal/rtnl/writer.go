package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Writer sends requests in batches on a blocking netlink socket opened
// inside a namespace. The kernel processes the messages of one sendmsg in
// order, synchronously, and answers only failures (no NLM_F_ACK) except
// for the last message of each batch, whose acknowledgement says that
// everything before it has been processed.
type Writer struct {
	fd   int
	seq  uint32
	rbuf []byte
	m    Msg
}

// WriteBatch is how many requests share one sendmsg. The failures of a
// batch are queued on the socket until read: a batch's worth of error
// messages must fit the receive buffer.
const WriteBatch = 128

// NewWriter opens a writer in namespace ns.
func NewWriter(ns netns.NsHandle) (*Writer, error) {
	w := &Writer{fd: -1, rbuf: make([]byte, 1<<16)}
	err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		w.fd = fd
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(w.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(w.fd)
		return nil, err
	}
	// Errors need not echo our request; extended acks carry the kernel's
	// message. A receive timeout bounds a kernel that never answers.
	_ = unix.SetsockoptInt(w.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(w.fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	if unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	tv := unix.Timeval{Sec: 10}
	_ = unix.SetsockoptTimeval(w.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return w, nil
}

// Close closes the socket.
func (w *Writer) Close() {
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
}

// KernelError is a failed request with the kernel's extended message.
type KernelError struct {
	Errno unix.Errno
	Msg   string
}

func (e *KernelError) Error() string {
	if e.Msg != "" {
		return e.Errno.Error() + ": " + e.Msg
	}
	return e.Errno.Error()
}

func (e *KernelError) Unwrap() error { return e.Errno }

// Send writes n requests, encoding request i with encode(i, m), and
// returns one error (nil: success) per request.
func (w *Writer) Send(n int, encode func(i int, m *Msg)) []error {
	errs := make([]error, n)
	for start := 0; start < n; start += WriteBatch {
		end := min(start+WriteBatch, n)
		w.m.Reset()
		first := w.seq + 1
		for i := start; i < end; i++ {
			encode(i, &w.m)
			w.seq++
			w.m.setSeq(w.seq)
			if i == end-1 {
				w.m.addFlags(unix.NLM_F_ACK)
			}
		}
		last := w.seq
		if err := w.sendAll(w.m.b); err != nil {
			for i := start; i < end; i++ {
				errs[i] = err
			}
			continue
		}
		if err := w.collect(first, last, errs[start:end]); err != nil {
			for i := start; i < end; i++ {
				if errs[i] == nil {
					errs[i] = err
				}
			}
		}
	}
	return errs
}

func (w *Writer) sendAll(b []byte) error {
	for {
		err := unix.Sendto(w.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// collect reads answers until the acknowledgement of seq last, filling
// errs[seq-first] for every failed request.
func (w *Writer) collect(first, last uint32, errs []error) error {
	for {
		n, _, err := unix.Recvfrom(w.fd, w.rbuf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink: waiting for acknowledgement: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(w.rbuf[:n])
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			if msg.Header.Type != unix.NLMSG_ERROR || len(msg.Data) < 4 {
				continue
			}
			seq := msg.Header.Seq
			if seq < first || seq > last {
				continue // a stale answer of an earlier, failed batch
			}
			code := int32(binary.NativeEndian.Uint32(msg.Data[0:4]))
			if code != 0 {
				errs[seq-first] = &KernelError{Errno: unix.Errno(-code), Msg: extAckMsg(msg.Header.Flags, msg.Data)}
			}
			if seq == last {
				return nil
			}
		}
	}
}

// extAckMsg returns NLMSGERR_ATTR_MSG from an extended acknowledgement
// (flags and data of an NLMSG_ERROR message).
func extAckMsg(flags uint16, data []byte) string {
	if flags&unix.NLM_F_ACK_TLVS == 0 {
		return ""
	}
	// nlmsgerr: error code + the request's header (payload capped).
	off := 4 + unix.NLMSG_HDRLEN
	if flags&unix.NLM_F_CAPPED == 0 && len(data) >= off {
		off = 4 + int(binary.NativeEndian.Uint32(data[4:8]))
		off = (off + 3) &^ 3
	}
	if off < 0 || off > len(data) {
		return ""
	}
	var s string
	Attrs(data[off:], func(t uint16, v []byte) {
		if t == unix.NLMSGERR_ATTR_MSG {
			s = string(v)
			for len(s) > 0 && s[len(s)-1] == 0 {
				s = s[:len(s)-1]
			}
		}
	})
	return s
}
