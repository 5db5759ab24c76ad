package vpcdhcp_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
)

// recordScript stands in for dhclient-script: it appends what dhclient
// hands it (reason and the new_* variables) to a file and, on a lease,
// applies the address as the real script would. It never touches
// /etc/resolv.conf (the real script would, in the host's /etc: ip netns
// exec shares the host's mount namespace).
const recordScript = `#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
	ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
BOUND6|RENEW6|REBIND6)
	ip -6 addr add "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad ;;
PREINIT6)
	ip link set "$interface" up ;;
esac
# Recorded after the address is applied, in one write, so a reader that
# sees the record sees a complete one and the address.
rec=$(echo "reason=$reason"; env | grep -E '^new_' | sort)
printf '%s\n\n' "$rec" >>"RECORD"
exit 0
`

// TestDhclient runs ISC dhclient -4 and -6 in the instance against the
// simulated VPC and checks what it received.
func TestDhclient(t *testing.T) {
	if _, err := exec.LookPath("dhclient"); err != nil {
		if nstest.InCI() {
			t.Fatal("dhclient is not installed (apt-get install -y isc-dhcp-client)")
		}
		t.Skip("dhclient is not installed (apt-get install -y isc-dhcp-client)")
	}
	v, _ := bed(t, "dhcpcl")
	linkUp(t, v, "eth0")
	dir := t.TempDir()
	rec4 := runDhclient(t, v, dir, "-4", "BOUND")
	for _, want := range []string{
		"new_ip_address=100.64.7.10", "new_subnet_mask=255.255.255.0", "new_routers=100.64.7.1",
		"new_domain_name_servers=100.64.7.2", "new_interface_mtu=9001", "new_dhcp_lease_time=3600",
	} {
		if !strings.Contains(rec4, want+"\n") {
			t.Errorf("dhclient -4 did not get %s:\n%s", want, rec4)
		}
	}
	rec6 := runDhclient(t, v, dir, "-6", "BOUND6")
	for _, want := range []string{"new_ip6_address=2001:db8:0:7::10", "new_ip6_prefixlen=128"} {
		if !strings.Contains(rec6, want+"\n") {
			t.Errorf("dhclient -6 did not get %s:\n%s", want, rec6)
		}
	}
	out, err := v.Exec(v.Instance, "ip", "-o", "addr", "show", "dev", "eth0")
	must(t, err)
	for _, a := range []string{"100.64.7.10/24", "2001:db8:0:7::10/128"} {
		if !strings.Contains(out, a) {
			t.Errorf("eth0 lacks %s after dhclient:\n%s", a, out)
		}
	}
	t.Logf("CHECK dhclient -4: 100.64.7.10/24 router .1 DNS .2 MTU 9001 lease 3600; dhclient -6: 2001:db8:0:7::10/128")
}

// runDhclient runs dhclient in the foreground in the instance until the
// script records reason want, then stops it (it is our child) and
// returns the record.
func runDhclient(t *testing.T, v *vpcsim.VPC, dir, family, want string) string {
	t.Helper()
	// dhclient runs its script with a clean environment: the record's
	// path is written into the script.
	record := filepath.Join(dir, "record"+family)
	script := filepath.Join(dir, "script"+family)
	must(t, os.WriteFile(script, []byte(strings.Replace(recordScript, `"RECORD"`, `"`+record+`"`, 1)), 0o755))
	logPath := filepath.Join(dir, "log"+family)
	logFile, err := os.Create(logPath)
	must(t, err)
	defer logFile.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd, err2 := v.CommandContext(ctx, v.Instance, "dhclient", family, "-d", "-1", "-sf", script,
		"-lf", filepath.Join(dir, "lease"+family), "-pf", filepath.Join(dir, "pid"+family), "eth0")
	must(t, err2)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	must(t, cmd.Start())
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(record)
		if strings.Contains(string(data), "reason="+want+"\n") {
			return string(data)
		}
		time.Sleep(50 * time.Millisecond)
	}
	data, _ := os.ReadFile(record)
	log, _ := os.ReadFile(logPath)
	t.Fatalf("dhclient %s: no %s within 20 s\nrecord:\n%s\nlog:\n%s", family, want, data, log)
	return ""
}
