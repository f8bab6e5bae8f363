// Command cri-teardown stops and removes every pod sandbox of a CRI runtime, the way
// `crictl rmp --all --force` does (cri-tools is not served here). Stopping a sandbox makes
// containerd kill its containers and run the CNI DEL that removes the pod's veth, IP
// allocation and iptables rules, so cluster/down.sh leaves nothing behind.
//
//	cri-teardown -endpoint unix:///run/beyondfit-cluster/containerd.sock [-list]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "CRI endpoint, e.g. unix:///run/x/containerd.sock")
	list := flag.Bool("list", false, "only print the sandboxes (id, namespace/name, state)")
	timeout := flag.Duration("timeout", 60*time.Second, "overall deadline")
	flag.Parse()
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "cri-teardown: -endpoint is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cri-teardown:", err)
		os.Exit(1)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cri-teardown: list sandboxes:", err)
		os.Exit(1)
	}
	failed := 0
	for _, p := range pods.Items {
		name := p.Metadata.Namespace + "/" + p.Metadata.Name
		if *list {
			fmt.Printf("%s\t%s\t%s\n", p.Id[:13], name, p.State)
			continue
		}
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-teardown: stop %s: %v\n", name, err)
			failed++
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-teardown: remove %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Printf("removed pod sandbox %s\n", name)
	}
	if failed > 0 {
		os.Exit(1)
	}
}
