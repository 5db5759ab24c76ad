package main

import "fmt"

// sections print one comparison each, in the order of issue 14's
// timelines after netconf's own.
var sections = []func(results, *report){
	netconfApply, attachToTraffic, propagation, demand, move, coldApply, boot, daemonIdle,
}

func netconfApply(r results, rp *report) {
	if !r.has("ApplyFromScratch") {
		return
	}
	ms := func(name string) string {
		if !r.has(name) {
			return "(not run)"
		}
		return fmt.Sprintf("%.1f ms", r.v(name, "ns/op")/1e6)
	}
	app, batch := r.v("ApplyFromScratch", "ns/op"), r.v("IPBatch", "ns/op")
	rp.section("netconf alone (in-process, no IMDS): 15 ENIs x (50 IPv4 + 50 IPv6 + 2 prefixes), from scratch")
	rp.line("%-34s %12s  (%g writes)", "ec2net Apply", ms("ApplyFromScratch"), r.v("ApplyFromScratch", "writes/op"))
	rp.line("%-34s %12s", "ip -batch (same objects)", ms("IPBatch"))
	rp.line("%-34s %12s", "ip, one command per object", ms("IPPerCommand"))
	rp.line("%-34s %12s   goal <= 1.50x: %s", "ec2net / ip -batch", ratio(app, batch),
		rp.goal("netconf apply <= 1.5x ip -batch", batch == 0 || app <= 1.5*batch))
	rp.line("%-34s %12s", "ec2net / ip per command", ratio(app, r.v("IPPerCommand", "ns/op")))
	if r.has("ReapplyNoChange") {
		ns, w := r.v("ReapplyNoChange", "ns/op"), r.v("ReapplyNoChange", "writes/op")
		rp.line("%-34s %9.1f ms, %g writes   goal < 5 ms, 0 writes: %s", "re-apply, nothing changed", ns/1e6, w,
			rp.goal("no-change re-apply < 5 ms", w == 0 && ns < 5e6))
	}
}

func attachToTraffic(r results, rp *report) {
	const n = "AttachToTraffic"
	if !r.has(n) {
		return
	}
	rp.section("hot attach with IMDS ready: RTM_NEWLINK -> first TCP connect from the ENI's last address")
	rp.line("p50 %.1f ms (goal <= 50: %s), p99 %.1f ms (goal <= 200: %s)",
		r.v(n, "p50-ms"), rp.goal("attach-to-traffic p50 <= 50 ms", r.v(n, "p50-ms") <= 50),
		r.v(n, "p99-ms"), rp.goal("attach-to-traffic p99 <= 200 ms", r.v(n, "p99-ms") <= 200))
}

func propagation(r results, rp *report) {
	for _, lag := range []string{"1s", "10s", "60s"} {
		n := "PropagationLag" + lag
		if !r.has(n) {
			continue
		}
		p99, a99 := r.v(n, "p99-ms"), r.v(n, "anchor-p99-ms")
		rp.section(fmt.Sprintf("timeline 1: hot attach, IMDS propagating L = %s (+ up to 250 ms), %g samples", lag, r.v(n, "samples")))
		rp.line("metadata complete -> every address carries traffic (ec2net):  p50 %6.0f ms  p99 %6.0f ms   goal p99 <= 300 ms: %s",
			r.v(n, "p50-ms"), p99, rp.goal("propagation L="+lag+" p99 <= 300 ms", p99 <= 300))
		rp.line("anchor: 100 ms device-number poll notices (configures nothing): p50 %6.0f ms  p99 %6.0f ms",
			r.v(n, "anchor-p50-ms"), a99)
		rp.line("ec2net / anchor, p99: %s (ec2net's figure includes configuring and the traffic)", ratio(p99, a99))
		rp.line("IMDS while pending, per second: ec2net %.1f requests, %.2f new connections, %.0f packets (the polling alone: %.1f, %.2f, %.0f);",
			r.v(n, "req/s"), r.v(n, "conn/s"), r.v(n, "pkt/s"), r.v(n, "poll-req/s"), r.v(n, "poll-conn/s"), r.v(n, "poll-pkt/s"))
		rp.line("  anchor %.1f requests, %.1f new connections, %.0f packets; ec2net's packets %s of the anchor's",
			r.v(n, "anchor-req/s"), r.v(n, "anchor-conn/s"), r.v(n, "anchor-pkt/s"), ratio(r.v(n, "pkt/s"), r.v(n, "anchor-pkt/s")))
		idle := r.v(n, "idle-req/3s")
		rp.line("once nothing is pending: %g IMDS requests in 3 s   goal 0: %s", idle, rp.goal("no polling once nothing is pending", idle == 0))
	}
}

func demand(r results, rp *report) {
	const n = "NewAddressDemand"
	if r.has(n) {
		p99 := r.v(n, "p99-s")
		rp.section(fmt.Sprintf("timeline 2: a newly assigned address at the default 60 s refresh (%g samples, IPv4 and IPv6)", r.v(n, "samples")))
		rp.line("first connection attempt -> connected (demand reads):  p50 %.2f s  p99 %.2f s   goal <= 3 s: %s",
			r.v(n, "p50-s"), p99, rp.goal("new address connects within 3 s", p99 <= 3))
		rp.line("  the address was configured p50 %.0f ms, p99 %.0f ms after the first attempt", r.v(n, "configured-p50-ms"), r.v(n, "configured-p99-ms"))
		rp.line("anchor, refresh only (measured at a 4 s refresh, wait scaled x15): configured after p50 %.1f s, p99 %.1f s;",
			r.v(n, "anchor-wait-p50-s"), r.v(n, "anchor-wait-p99-s"))
		rp.line("  a connection then succeeds at the next SYN (classic 0,1,3,7,15,31,63 s): p50 %.0f s, p99 %.0f s", r.v(n, "anchor-p50-s"), r.v(n, "anchor-p99-s"))
		rp.line("ec2net / anchor, p99: %s", ratio(p99, r.v(n, "anchor-p99-s")))
		second := r.v(n, "second-1s-later-s")
		rp.line("a second address assigned 1 s after another: connected after %.2f s (its first SYNs fall in the 2 s after the first's demand read)   goal <= 3 s: %s",
			second, rp.goal("a second address 1 s later connects within 3 s", second <= 3))
		on, off := r.v(n, "quiet-req/s"), r.v(n, "anchor-quiet-req/s")
		pon, poff := r.v(n, "quiet-req/read"), r.v(n, "anchor-quiet-req/read")
		rp.line("quiet, at a 4 s refresh, over three refresh periods: one read per refresh either way, %.1f requests per read with demand reads, %.1f without (unchanged: %s);",
			pon, poff, rp.goal("quiet request rate unchanged by demand reads", pon == poff))
		rp.line("  %.2f requests/s with, %.2f without (the refresh's ±10 %% jitter)", on, off)
		rp.line("a flood of %g stray packets in 7 s: %g demand reads (%g IMDS requests)", r.v(n, "flood-pkts"), r.v(n, "flood-reads/7s"), r.v(n, "flood-req/7s"))
	}
	const v6 = "NewIPv6AddressIPv4OnlyPrimary"
	if r.has(v6) {
		rp.line("an IPv6 address on a secondary ENI when the primary has no IPv6 route: connected %s;",
			map[bool]string{true: "yes", false: "NO"}[r.v(v6, "connected") == 1])
		rp.line("  the attempt ended after %.2f s; the stray SYNs rose Ip6InNoRoutes by %g, Ip6InAddrErrors by %g (demand reads watch both)",
			r.v(v6, "attempt-s"), r.v(v6, "Ip6InNoRoutes"), r.v(v6, "Ip6InAddrErrors"))
		rp.goal("IPv6 address, IPv4-only primary: demand read", r.v(v6, "connected") == 1)
	}
}

func move(r results, rp *report) {
	const n = "Move"
	if !r.has(n) {
		return
	}
	p99 := r.v(n, "over-L-p99-ms")
	rp.section(fmt.Sprintf("timeline 3: ENI moved between two instances, each running ec2net (%g moves, L = 1 s + up to 250 ms)", r.v(n, "samples")))
	rp.line("detach -> every address answered by the new instance, minus L:  p50 %.0f ms  p99 %.0f ms   goal <= 300 ms: %s",
		r.v(n, "over-L-p50-ms"), p99, rp.goal("move within L + 300 ms", p99 <= 300))
	rp.line("of which after its IMDS completes:                              p50 %.0f ms  p99 %.0f ms",
		r.v(n, "after-complete-p50-ms"), r.v(n, "after-complete-p99-ms"))
}

func coldApply(r results, rp *report) {
	const n = "ColdApply15x100"
	if !r.has(n) {
		return
	}
	ec, ipb, plan := r.v(n, "ec2net-ms"), r.v(n, "ip-batch-ms"), r.v(n, "plan-ms")
	rp.section(fmt.Sprintf("cold apply end to end: 15 ENIs x (50 IPv4 + 50 IPv6), the binary, IMDS through the router (%g runs each)", r.v(n, "samples")))
	rp.line("ec2net apply %.0f ms, ip -batch of the same objects %.0f ms: %s   goal <= 1.00x: %s",
		ec, ipb, ratio(ec, ipb), rp.goal("cold apply <= ip -batch", ec <= ipb))
	rp.line("where ec2net's time goes: the same process without writes (plan) %.0f ms, of which a cold IMDS read ~%.0f ms and process start ~%.0f ms; the writes ~%.0f ms",
		plan, r.v(n, "imds-read-ms"), r.v(n, "process-ms"), ec-plan)
}

func boot(r results, rp *report) {
	const n = "Boot/log=info"
	if !r.has(n) {
		return
	}
	rp.section(fmt.Sprintf("boot (systemd-nspawn, the .deb installed before first boot), %g cold-attached addresses on 15 ENIs", r.v(n, "addresses")))
	rp.line("unit start -> READY=1: %.0f ms = start to first log line %.0f + to first IMDS request %.0f + IMDS reads %.0f (%g requests) + apply to READY %.0f",
		r.v(n, "start-to-ready-ms"), r.v(n, "start-to-log-ms"), r.v(n, "log-to-imds-ms"), r.v(n, "imds-ms"), r.v(n, "imds-req"), r.v(n, "apply-to-ready-ms"))
	rp.line("network-online.target reached %.1f ms after READY=1 (ENIs configured before it: %s); %g journal lines",
		r.v(n, "ready-to-online-ms"), rp.goal("ENIs configured before network-online.target", r.v(n, "ready-to-online-ms") >= 0), r.v(n, "journal-lines"))
	if w := "Boot/log=warn"; r.has(w) {
		rp.line("with log-level = warn (%g journal lines): unit start -> READY=1 %.0f ms (apply to READY %.0f ms)",
			r.v(w, "journal-lines"), r.v(w, "start-to-ready-ms"), r.v(w, "apply-to-ready-ms"))
	}
}

func daemonIdle(r results, rp *report) {
	const n = "DaemonIdle"
	if !r.has(n) {
		return
	}
	rss, req, budget := r.v(n, "rss-MiB"), r.v(n, "imds-req/refresh"), r.v(n, "imds-req-budget")
	rp.section("the idle daemon (3 ENIs)")
	rp.line("RSS %.1f MiB (goal <= 20: %s), %.2f %% CPU between refreshes, %g IMDS requests per quiet refresh (budget %g: %s), RSS growth over 30 refreshes %.2f MiB",
		rss, rp.goal("idle RSS <= 20 MiB", rss <= 20), r.v(n, "cpu-%"), req, budget,
		rp.goal("quiet refresh within 1 + 4 per ENI", req <= budget), r.v(n, "rss-growth-next-30-MiB"))
}
