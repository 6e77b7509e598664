package spool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/upstream"
)

// twoUpstreams starts a primary and a secondary fake upstream and returns
// queue options with routes "primary" then "secondary" (short failover
// and probe times) and a fresh spool. broken, when not nil, spoils the
// primary's client options (wrong password, wrong CA).
func twoUpstreams(t *testing.T, popts mailertest.Options, broken func(o *upstream.Options)) (p, s *mailertest.Upstream, opts QueueOptions, sp *Spool) {
	t.Helper()
	p = mailertest.NewUpstream(t, popts)
	s = mailertest.NewUpstream(t, mailertest.Options{})
	po := p.Options()
	if broken != nil {
		broken(&po)
	}
	opts = testQueueOptions(upstream.Options{})
	opts.Routes = []Route{
		{Name: "primary", Upstream: po, FailoverAfter: 300 * time.Millisecond, ProbeInterval: 300 * time.Millisecond},
		{Name: "secondary", Upstream: s.Options(), FailoverAfter: 300 * time.Millisecond, ProbeInterval: 300 * time.Millisecond},
	}
	return p, s, opts, openTestSpool(t, t.TempDir())
}

func enqueueN(t *testing.T, q *Queue, s *Spool, from, n int) []string {
	t.Helper()
	var ids []string
	for i := from; i < from+n; i++ {
		id, err := s.Enqueue(testSub(i, fmt.Sprintf("k%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	q.Wake()
	return ids
}

// checkOnce fails when a message body arrived twice, across upstreams.
func checkOnce(t *testing.T, ups ...*mailertest.Upstream) int {
	t.Helper()
	seen := map[string]bool{}
	for _, u := range ups {
		for _, m := range u.Messages() {
			if seen[string(m.Data)] {
				t.Errorf("delivered twice: %q", m.Data)
			}
			seen[string(m.Data)] = true
		}
	}
	return len(seen)
}

func TestFailoverSecondaryCarriesWhenPrimaryCannot(t *testing.T) {
	for _, tc := range []struct {
		name   string
		popts  mailertest.Options
		broken func(o *upstream.Options)
		stop   bool
	}{
		{name: "down", stop: true},
		{name: "auth refused", popts: mailertest.Options{RequireAuth: true}, broken: func(o *upstream.Options) {
			o.Secret = func(context.Context) (string, error) { return "wrong password", nil }
		}},
		{name: "tls broken", popts: mailertest.Options{CertHosts: []string{"elsewhere.test"}}},
		{name: "mail refused without auth", popts: mailertest.Options{RequireAuth: true}, broken: func(o *upstream.Options) {
			o.Auth, o.Username, o.Secret = "none", "", nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, s, opts, sp := twoUpstreams(t, tc.popts, tc.broken)
			if tc.stop {
				p.Stop()
			}
			q, results := runQueue(t, sp, opts)
			enqueueN(t, q, sp, 0, 10)
			for _, r := range waitResults(t, results, 10, 15*time.Second) {
				if !r.Delivered || r.Upstream != "secondary" {
					t.Errorf("result: delivered %v via %q (%s)", r.Delivered, r.Upstream, r.Reason)
				}
			}
			if n := len(p.Messages()); n != 0 {
				t.Errorf("primary got %d messages", n)
			}
			if n := checkOnce(t, p, s); n != 10 {
				t.Errorf("%d distinct messages delivered, want 10", n)
			}
			st := q.Stats()
			if len(st.Upstreams) != 2 || st.Upstreams[1].Delivered != 10 || st.Upstreams[0].LastError == "" {
				t.Errorf("stats: %+v", st.Upstreams)
			}
		})
	}
}

// A recovered primary carries new mail again: the secondary is a fallback,
// not a new home.
func TestFailoverPrimaryComesBack(t *testing.T) {
	p, s, opts, sp := twoUpstreams(t, mailertest.Options{}, nil)
	p.Stop()
	q, results := runQueue(t, sp, opts)
	enqueueN(t, q, sp, 0, 5)
	for _, r := range waitResults(t, results, 5, 15*time.Second) {
		if r.Upstream != "secondary" {
			t.Fatalf("during the outage via %q", r.Upstream)
		}
	}
	if st := q.Stats().Upstreams[0]; st.State != "down" || st.DownSince.IsZero() {
		t.Errorf("primary during outage: %+v", st)
	}
	p.Start()
	// One message at a time until the probe finds the primary back.
	deadline := time.Now().Add(15 * time.Second)
	n := 5
	for len(p.Messages()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the primary never carried mail again")
		}
		enqueueN(t, q, sp, n, 1)
		waitResults(t, results, 1, 10*time.Second)
		n++
	}
	enqueueN(t, q, sp, n, 5)
	for _, r := range waitResults(t, results, 5, 10*time.Second) {
		if r.Upstream != "primary" {
			t.Errorf("after recovery via %q", r.Upstream)
		}
	}
	if st := q.Stats().Upstreams[0]; st.State != "ok" {
		t.Errorf("primary after recovery: %+v", st)
	}
	if got := checkOnce(t, p, s); got != n+5 {
		t.Errorf("%d distinct messages delivered, want %d", got, n+5)
	}
}

// A message the primary keeps deferring moves to the secondary after
// failover_after, and that is recorded in its state.
func TestFailoverAfterMessageLevel4xx(t *testing.T) {
	p, s, opts, sp := twoUpstreams(t, mailertest.Options{}, nil)
	p.SetRcpt(func(string) error { return mailertest.Reply(452, "4.2.2 mailbox busy") })
	opts.Routes[0].FailoverAfter = 500 * time.Millisecond
	q, results := runQueue(t, sp, opts)
	ids := enqueueN(t, q, sp, 0, 1)
	// Held at the secondary until we look at its state.
	s.SetData(func(mailertest.Received) error { return mailertest.Reply(451, "4.3.0 later") })
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := sp.Get(ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if m.Upstream == "secondary" {
			if m.Attempts < 2 || m.Via == "" {
				t.Errorf("state after failover: %+v", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never moved on: %+v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.SetData(nil)
	r := waitResults(t, results, 1, 10*time.Second)[0]
	if !r.Delivered || r.Upstream != "secondary" {
		t.Errorf("result %+v", r)
	}
	if st := q.Stats().Upstreams[0]; st.FailedOver == 0 || st.Deferred == 0 || st.State != "ok" {
		t.Errorf("primary stats: %+v (a message-level 4xx must not hold the upstream down)", st)
	}
}

// A 5.7.x policy refusal by one provider sends the message to the next;
// a mailbox refusal (5.1.1) is final; a message every entry refused for
// policy is dead-lettered.
func TestFailoverPermanentRefusals(t *testing.T) {
	policy := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "message refused by policy"}
	mailbox := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	t.Run("policy", func(t *testing.T) {
		p, s, opts, sp := twoUpstreams(t, mailertest.Options{}, nil)
		p.SetData(func(mailertest.Received) error { return policy })
		q, results := runQueue(t, sp, opts)
		enqueueN(t, q, sp, 0, 1)
		if r := waitResults(t, results, 1, 10*time.Second)[0]; !r.Delivered || r.Upstream != "secondary" {
			t.Errorf("result %+v", r)
		}
		checkOnce(t, p, s)
	})
	t.Run("mailbox", func(t *testing.T) {
		p, s, opts, sp := twoUpstreams(t, mailertest.Options{}, nil)
		p.SetRcpt(func(string) error { return mailbox })
		q, results := runQueue(t, sp, opts)
		enqueueN(t, q, sp, 0, 1)
		if r := waitResults(t, results, 1, 10*time.Second)[0]; r.Delivered || r.Code != 550 || r.Upstream != "primary" {
			t.Errorf("result %+v", r)
		}
		if n := s.Connections(); n != 0 {
			t.Errorf("secondary was asked (%d connections) after a mailbox refusal", n)
		}
	})
	t.Run("all refuse", func(t *testing.T) {
		p, s, opts, sp := twoUpstreams(t, mailertest.Options{}, nil)
		p.SetData(func(mailertest.Received) error { return policy })
		s.SetRcpt(func(string) error { return policy })
		q, results := runQueue(t, sp, opts)
		enqueueN(t, q, sp, 0, 1)
		r := waitResults(t, results, 1, 10*time.Second)[0]
		if r.Delivered || r.Code != 550 || r.Upstream != "secondary" || len(r.Message.Refused) != 1 {
			t.Errorf("result %+v", r)
		}
	})
}

// Routing rules: the first entry whose rules match takes the message.
func TestFailoverRoutingRules(t *testing.T) {
	p, s, opts, sp := twoUpstreams(t, mailertest.Options{}, nil)
	opts.Routes[0].RecipientDomains = []string{"plant.example", ".plant.example"}
	q, results := runQueue(t, sp, opts)
	for i, to := range []string{"ops@plant.example", "ops@hall2.plant.example", "ops@other.example"} {
		sub := testSub(i, "")
		sub.To = []string{to}
		if _, err := sp.Enqueue(sub); err != nil {
			t.Fatal(err)
		}
	}
	// Two recipients, one outside the rule: not for the primary.
	sub := testSub(9, "")
	sub.To = []string{"ops@plant.example", "boss@other.example"}
	if _, err := sp.Enqueue(sub); err != nil {
		t.Fatal(err)
	}
	q.Wake()
	waitResults(t, results, 4, 10*time.Second)
	if len(p.Messages()) != 2 || len(s.Messages()) != 2 {
		t.Errorf("primary got %d, secondary %d; want 2 and 2", len(p.Messages()), len(s.Messages()))
	}
	for _, m := range s.Messages() {
		if m.To[0] == "ops@plant.example" && len(m.To) == 1 {
			t.Errorf("plant mail went to the secondary: %+v", m.To)
		}
	}
}

// With rules on every entry, a message none matches waits (a
// configuration matter) instead of being lost or sent anywhere.
func TestFailoverNoRouteMatches(t *testing.T) {
	p, s, opts, sp := twoUpstreams(t, mailertest.Options{}, nil)
	opts.Routes[0].RecipientDomains = []string{"a.example"}
	opts.Routes[1].SenderDomains = []string{"b.example"}
	q, _ := runQueue(t, sp, opts)
	ids := enqueueN(t, q, sp, 0, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := sp.Get(ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if m.Attempts > 0 {
			if m.LastError == "" {
				t.Errorf("no reason recorded: %+v", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never tried")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p.Connections()+s.Connections() != 0 {
		t.Error("an upstream was contacted for a message no entry matches")
	}
}

func TestRouteMatches(t *testing.T) {
	for _, tc := range []struct {
		rcpt, sndr []string
		from       string
		to         []string
		want       bool
	}{
		{nil, nil, "a@x.example", []string{"b@y.example"}, true},
		{[]string{"y.example"}, nil, "a@x.example", []string{"b@Y.Example"}, true},
		{[]string{"y.example"}, nil, "a@x.example", []string{"b@y.example", "c@z.example"}, false},
		{[]string{".y.example"}, nil, "a@x.example", []string{"b@y.example"}, false},
		{[]string{".y.example"}, nil, "a@x.example", []string{"b@sub.y.example"}, true},
		{nil, []string{"x.example"}, "a@x.example", []string{"b@y.example"}, true},
		{nil, []string{"x.example"}, "", []string{"b@y.example"}, false},
	} {
		r := Route{RecipientDomains: tc.rcpt, SenderDomains: tc.sndr}
		m := &Message{Envelope: Envelope{From: tc.from, To: tc.to}}
		if got := r.matches(m); got != tc.want {
			t.Errorf("rules %v/%v, %s -> %v: got %v", tc.rcpt, tc.sndr, tc.from, tc.to, got)
		}
	}
}

func TestPolicyRefusal(t *testing.T) {
	for _, tc := range []struct {
		se   upstream.SMTPError
		want bool
	}{
		{upstream.SMTPError{Code: 550, Command: "MAIL", Msg: "5.1.8 bad sender domain"}, true},
		{upstream.SMTPError{Code: 554, Command: "DATA", Msg: "5.7.1 spam"}, true},
		{upstream.SMTPError{Code: 550, Command: "RCPT", Msg: "5.7.1 relaying denied"}, true},
		{upstream.SMTPError{Code: 550, Command: "RCPT", Msg: "5.1.1 user unknown"}, false},
		{upstream.SMTPError{Code: 552, Command: "DATA", Msg: "5.3.4 too big"}, false},
		{upstream.SMTPError{Code: 550, Command: "RCPT", Msg: "no enhanced code"}, false},
	} {
		if got := policyRefusal(&tc.se); got != tc.want {
			t.Errorf("%v: got %v", &tc.se, got)
		}
	}
}
