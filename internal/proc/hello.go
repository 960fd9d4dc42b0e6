package proc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// Hello sends "HELLO 3" to a RESP3 server (SierraDB, Redis) on a fresh
// connection and returns the scalar fields of its reply map as strings, e.g.
// "server" → "sierradb" or "redis". Nested values come back as "…".
func Hello(ctx context.Context, addr string) (map[string]string, error) {
	var out map[string]string
	err := roundTrip(ctx, addr, []string{"HELLO", "3"}, func(r *bufio.Reader) error {
		head, err := readLine(r)
		if err != nil {
			return err
		}
		switch head[0] {
		case '%':
		case '-':
			return fmt.Errorf("HELLO 3 answered with an error: %s", head[1:])
		default:
			return fmt.Errorf("HELLO 3 answered %q, not a map: not a RESP3 server", head)
		}
		n, err := strconv.Atoi(head[1:])
		if err != nil || n < 0 || n > 64 {
			return fmt.Errorf("HELLO 3 answered a bad map header %q", head)
		}
		out = make(map[string]string, n)
		for range n {
			k, err := readValue(r, 0)
			if err != nil {
				return err
			}
			v, err := readValue(r, 0)
			if err != nil {
				return err
			}
			out[k] = v
		}
		return nil
	})
	return out, err
}

// Do sends one command to a RESP server on a fresh connection and returns
// its reply as text (aggregates as "…"); an error reply is an error.
func Do(ctx context.Context, addr string, args ...string) (string, error) {
	var out string
	err := roundTrip(ctx, addr, args, func(r *bufio.Reader) error {
		var err error
		out, err = readValue(r, 0)
		return err
	})
	return out, err
}

func roundTrip(ctx context.Context, addr string, args []string, read func(*bufio.Reader) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return err
	}
	return read(bufio.NewReader(conn))
}

// CheckHello returns a readiness check that passes once the server at addr
// answers HELLO 3 with the given "server" field, so that a test never pairs
// with another kind of server that happens to hold the port (tested:
// TestCheckHelloTellsRedisFromSierraDB).
func CheckHello(addr, server string) func(context.Context) error {
	return func(ctx context.Context) error {
		info, err := Hello(ctx, addr)
		if err != nil {
			return err
		}
		if info["server"] != server {
			return fmt.Errorf("%s is not %s: HELLO says server %q", addr, server, info["server"])
		}
		return nil
	}
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", fmt.Errorf("empty RESP line")
	}
	return line, nil
}

// readValue reads one RESP3 value: scalars as their text, aggregates
// skipped and returned as "…".
func readValue(r *bufio.Reader, depth int) (string, error) {
	if depth > 8 {
		return "", fmt.Errorf("RESP reply nested too deep")
	}
	line, err := readLine(r)
	if err != nil {
		return "", err
	}
	switch line[0] {
	case '+', ':', ',', '#', '(':
		return line[1:], nil
	case '_':
		return "", nil
	case '-':
		return "", fmt.Errorf("server error: %s", line[1:])
	case '$', '=':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 || n > 1<<20 {
			return "", fmt.Errorf("bad RESP blob header %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 || n > 1024 {
			return "", fmt.Errorf("bad RESP aggregate header %q", line)
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for range n {
			if _, err := readValue(r, depth+1); err != nil {
				return "", err
			}
		}
		return "…", nil
	}
	return "", fmt.Errorf("unknown RESP type in %q", line)
}
