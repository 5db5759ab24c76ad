package netconf

import "testing"

// BenchmarkStatusVerifiesPaths: status of the benchmark instance (15 ENIs,
// 1500 addresses) after apply, every address's path asked of the kernel
// (3 lookups per IPv4 address, 2 per IPv6 address, batched).
func BenchmarkStatusVerifiesPaths(b *testing.B) {
	bd := benchBed(b)
	r := bd.reconciler()
	if res, err := r.Apply(benchSnapshot(), cfg()); err != nil || len(res.Failed()) != 0 {
		b.Fatalf("apply: %v %v", err, res.Failed())
	}
	verified := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rows, err := r.Status(benchSnapshot(), cfg())
		if err != nil {
			b.Fatal(err)
		}
		verified = 0
		for _, row := range rows {
			for _, a := range row.Addrs {
				if a.State == StateConfigured {
					verified++
				}
			}
		}
	}
	if verified != benchENIs*benchAddrs*2 {
		b.Fatalf("%d addresses verified, want %d", verified, benchENIs*benchAddrs*2)
	}
	b.ReportMetric(float64(verified), "addresses/op")
}
