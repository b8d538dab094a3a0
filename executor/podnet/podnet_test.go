package podnet

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, ip string, cidrs ...string) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{PodCIDRs: cidrs}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	if ip != "" {
		n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeHostName, Address: name}, {Type: v1.NodeInternalIP, Address: ip}}
	}
	return n
}

func TestDesiredRoutesEveryOtherNodesPods(t *testing.T) {
	got := Desired([]*v1.Node{
		node("a1", "10.87.0.11", "10.88.0.0/24"),
		node("a2", "10.87.0.12", "10.88.1.0/24", "fd00::/64"),
		node("a3", "", "10.88.2.0/24"),           // no address yet
		node("a4", "10.87.0.14"),                 // no pod CIDR yet
		node("a5", "10.87.0.11", "10.88.5.0/24"), // claims our address
	}, Config{NodeName: "a1", NodeIP: "10.87.0.11"})
	want := map[string]Route{"10.88.1.0/24": {Dst: "10.88.1.0/24", Via: "10.87.0.12"}}
	if len(got) != len(want) || got["10.88.1.0/24"] != want["10.88.1.0/24"] {
		t.Errorf("routes %v, want %v: only other nodes with an IPv4 pod CIDR and address, never our own pods", got, want)
	}
}
