//go:build pprof

// This file is only in binaries built with -tags pprof (bench/smtprelay.sh
// with BENCH_PPROF=1): release builds have no profiling endpoint at all.
// With PLCMAIL_PPROF=127.0.0.1:PORT in the environment such a binary serves
// net/http/pprof on that loopback address, so a benchmark can take a CPU
// profile of `plcmail serve` under load:
//
//	go tool pprof -top http://127.0.0.1:PORT/debug/pprof/profile?seconds=5

package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("PLCMAIL_PPROF")
	if addr == "" {
		return
	}
	if err := servePprof(addr); err != nil {
		fmt.Fprintln(os.Stderr, "plcmail: PLCMAIL_PPROF:", err)
		os.Exit(exitUsage)
	}
}

// servePprof serves the profiles on addr, which must be a loopback address:
// a profile shows what the gateway is doing, and is nobody else's business.
func servePprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: not a loopback address", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	go http.Serve(l, mux)
	return nil
}
