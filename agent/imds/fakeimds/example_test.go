package fakeimds_test

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
)

// A test typically starts an instance with its primary ENI, hot-attaches a
// second ENI that is still propagating, and lets the code under test read
// the endpoint.
func Example() {
	s := fakeimds.New()
	defer s.Close()
	s.AttachENI(fakeimds.ENI{
		MAC: "0e:00:00:00:00:01", InterfaceID: "eni-00000000000000001", DeviceNumber: 0,
		SubnetIPv4: "100.64.1.0/24", VPCIPv4: []string{"100.64.0.0/16"}, IPv4: []string{"100.64.1.10"},
	})
	s.SetPrimaryMAC("0e:00:00:00:00:01")
	endpoint, err := s.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}

	s.SetPropagation(time.Minute, "subnet-ipv4-cidr-block")
	s.AttachENI(fakeimds.ENI{
		MAC: "0e:00:00:00:00:02", InterfaceID: "eni-00000000000000002", DeviceNumber: 1,
		SubnetIPv4: "100.64.2.0/24", VPCIPv4: []string{"100.64.0.0/16"}, IPv4: []string{"100.64.2.10"},
	})

	get := func(path string) string {
		req, _ := http.NewRequest(http.MethodPut, endpoint+"/latest/api/token", nil)
		req.Header.Set(fakeimds.TokenTTLHeader, "60")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		tok, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		req, _ = http.NewRequest(http.MethodGet, endpoint+"/latest/meta-data/"+path, nil)
		req.Header.Set(fakeimds.TokenHeader, string(tok))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return resp.Status
		}
		return string(b)
	}
	fmt.Println(get("network/interfaces/macs/"))
	fmt.Println(get("network/interfaces/macs/0e:00:00:00:00:02/device-number"))
	fmt.Println(get("network/interfaces/macs/0e:00:00:00:00:02/subnet-ipv4-cidr-block"))
	s.FinishPropagation()
	fmt.Println(get("network/interfaces/macs/0e:00:00:00:00:02/device-number"))
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// 0e:00:00:00:00:01/
	// 0e:00:00:00:00:02/
	// 0
	// 404 Not Found
	// 1
}
