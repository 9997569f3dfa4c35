// idlereset verify driver: one idle connection of a real Go PostgreSQL library.
//
// usage: driver LIBRARY TARGET_JSON IDLE_S SETTINGS_JSON
//
// LIBRARY is `lib-pq` (github.com/lib/pq through database/sql) or `pgx` (github.com/jackc/pgx/v4
// through pgxpool). TARGET_JSON holds `dsn` (a key=value connection string). SETTINGS_JSON
// ({} = the library's defaults, its own dialer included) may hold, in seconds:
//
//	KeepAlive          net.Dialer.KeepAlive (-1 = off); replaces the library's dialer
//	KeepAliveInterval  TCP_KEEPINTVL, KeepAliveCount TCP_KEEPCNT (Go 1.23's net.KeepAliveConfig;
//	                   set with setsockopt after connect on older Go)
//	ConnMaxIdleTime    sql.DB.SetConnMaxIdleTime / pgxpool.Config.MaxConnIdleTime
//	ConnMaxLifetime    sql.DB.SetConnMaxLifetime / pgxpool.Config.MaxConnLifetime
//
// Prints {"event":"connected",...} after the first query, stays idle IDLE_S seconds, runs one
// more query and prints {"event":"result",...}. The application log goes to stderr with the
// standard `log` package (log.Printf, microsecond timestamps), as Go services write it.
//
// Built by `verify` with the Go toolchain in GOPATH mode against the Debian packages' sources
// (/usr/share/gocode), offline; versions are stamped in with -ldflags -X.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v4/pgxpool"
	"github.com/lib/pq"
)

// Stamped at build time (-ldflags "-X main.libpqVersion=... -X main.pgxVersion=...").
var (
	libpqVersion = "unknown"
	pgxVersion   = "unknown"
)

var out = json.NewEncoder(os.Stdout)

func emit(v map[string]interface{}) { _ = out.Encode(v) }

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// dialer builds the net.Dialer the settings ask for; nil = keep the library's own dialer.
func dialer(set map[string]float64) *net.Dialer {
	ka, ok := set["KeepAlive"]
	if !ok {
		return nil
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: secs(ka)}
	if ka < 0 {
		d.KeepAlive = -1
		return d
	}
	return d
}

// dial connects with d and applies the keepalive interval Go < 1.23 cannot express.
func dial(ctx context.Context, d *net.Dialer, set map[string]float64, network, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	// net.Dialer sets TCP_KEEPIDLE and TCP_KEEPINTVL (both = KeepAlive) after connect; what
	// Go 1.23's KeepAliveConfig adds (a separate interval, the count) is set over them here.
	if tc, ok := c.(*net.TCPConn); ok && d.KeepAlive > 0 {
		if raw, err := tc.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) {
				for k, opt := range map[string]int{"KeepAliveInterval": syscall.TCP_KEEPINTVL, "KeepAliveCount": syscall.TCP_KEEPCNT} {
					if v, ok := set[k]; ok {
						_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, opt, int(v))
					}
				}
			})
		}
	}
	return c, nil
}

type pqDialer struct {
	d   *net.Dialer
	set map[string]float64
}

func (p pqDialer) Dial(network, addr string) (net.Conn, error) {
	return dial(context.Background(), p.d, p.set, network, addr)
}

func (p pqDialer) DialTimeout(network, addr string, t time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t)
	defer cancel()
	return dial(ctx, p.d, p.set, network, addr)
}

func (p pqDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dial(ctx, p.d, p.set, network, addr)
}

// retires says whether the settings make the pool retire a connection idle for `idle` seconds
// (a new connection then answers without any reset having happened).
func retires(set map[string]float64, idle float64) bool {
	for _, k := range []string{"ConnMaxIdleTime", "ConnMaxLifetime"} {
		if v, ok := set[k]; ok && v > 0 && v < idle {
			return true
		}
	}
	return false
}

// lib/pq through database/sql, as a Go service holds it (sql.DB, one connection).
func libpqRun(target map[string]string, idle float64, set map[string]float64) (bool, bool, bool, error) {
	conn, err := pq.NewConnector(target["dsn"])
	if err != nil {
		return false, false, false, err
	}
	if d := dialer(set); d != nil {
		conn.Dialer(pqDialer{d, set})
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxOpenConns(1)
	if v, ok := set["ConnMaxIdleTime"]; ok {
		db.SetConnMaxIdleTime(secs(v))
	}
	if v, ok := set["ConnMaxLifetime"]; ok {
		db.SetConnMaxLifetime(secs(v))
	}
	var port, pid int
	// The client port as the server sees it: lib/pq does not expose its socket (no NAT in the
	// matrix's path, so it is the local port).
	if err := db.QueryRow("select inet_client_port(), pg_backend_pid()").Scan(&port, &pid); err != nil {
		return false, false, false, err
	}
	emit(map[string]interface{}{"event": "connected", "library": "lib-pq", "version": libpqVersion,
		"wrapper": runtime.Version(), "local_port": port, "backend_pid": pid})
	log.Printf("connected conn=%d backend_pid=%d, idle for %.1fs", port, pid, idle)
	time.Sleep(secs(idle))
	var tag string
	var after int
	if err := db.QueryRow("select 'after', pg_backend_pid()").Scan(&tag, &after); err != nil {
		return false, false, false, err
	}
	st := db.Stats()
	replaced := after != pid
	hidden := replaced && st.MaxIdleTimeClosed+st.MaxLifetimeClosed == 0
	if hidden {
		log.Printf("backend_pid=%d was replaced by backend_pid=%d after %.1fs idle (database/sql retried on driver.ErrBadConn)", pid, after, idle)
	}
	return tag == "after", replaced, hidden, nil
}

// pgx v4 through pgxpool, as a Go service holds it (one connection).
func pgxRun(target map[string]string, idle float64, set map[string]float64) (bool, bool, bool, error) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(target["dsn"])
	if err != nil {
		return false, false, false, err
	}
	cfg.MaxConns = 1
	if d := dialer(set); d != nil {
		cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dial(ctx, d, set, network, addr)
		}
	}
	if v, ok := set["ConnMaxIdleTime"]; ok {
		cfg.MaxConnIdleTime = secs(v)
	}
	if v, ok := set["ConnMaxLifetime"]; ok {
		cfg.MaxConnLifetime = secs(v)
	}
	pool, err := pgxpool.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, false, false, err
	}
	defer pool.Close()
	c, err := pool.Acquire(ctx)
	if err != nil {
		return false, false, false, err
	}
	var tag string
	if err := c.QueryRow(ctx, "select 'before'").Scan(&tag); err != nil {
		c.Release()
		return false, false, false, err
	}
	pid := c.Conn().PgConn().PID()
	port := 0
	if a, ok := c.Conn().PgConn().Conn().LocalAddr().(*net.TCPAddr); ok {
		port = a.Port
	}
	c.Release()
	emit(map[string]interface{}{"event": "connected", "library": "pgx", "version": pgxVersion,
		"wrapper": runtime.Version(), "local_port": port, "backend_pid": pid})
	log.Printf("connected conn=%d backend_pid=%d, idle for %.1fs", port, pid, idle)
	time.Sleep(secs(idle))
	var after uint32
	if err := pool.QueryRow(ctx, "select 'after', pg_backend_pid()").Scan(&tag, &after); err != nil {
		return false, false, false, err
	}
	hidden := after != pid && !retires(set, idle)
	if hidden {
		log.Printf("backend_pid=%d was replaced by backend_pid=%d after %.1fs idle", pid, after, idle)
	}
	return tag == "after", after != pid, hidden, nil
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds | log.LUTC)
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: driver LIBRARY TARGET_JSON IDLE_S SETTINGS_JSON")
		os.Exit(2)
	}
	lib := os.Args[1]
	var target map[string]string
	var set map[string]float64
	idle, err := strconv.ParseFloat(os.Args[3], 64)
	if err == nil {
		err = json.Unmarshal([]byte(os.Args[2]), &target)
	}
	if err == nil {
		err = json.Unmarshal([]byte(os.Args[4]), &set)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad arguments:", err)
		os.Exit(2)
	}
	run := libpqRun
	if lib == "pgx" {
		run = pgxRun
	}
	ok, replaced, retried, err := run(target, idle, set)
	if err != nil {
		// The application's view: whatever the library returned, logged as services do.
		log.Printf("query failed after %.1fs idle: %v", idle, err)
		msg := strings.TrimSpace(err.Error())
		emit(map[string]interface{}{"event": "result", "outcome": "error", "retried": false, "error": msg})
		return
	}
	outcome := "error"
	if ok {
		outcome = "survived"
	}
	emit(map[string]interface{}{"event": "result", "outcome": outcome, "retried": retried, "replaced": replaced, "error": nil})
}
