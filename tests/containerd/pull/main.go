// containerd-pull: pulls an image with containerd's client library, as the
// CRI plugin does (Pull with unpack into a snapshotter, which sends
// remote snapshotters the containerd.io/snapshot.ref label and fetches a
// layer only if the snapshotter does not already have it). `ctr images
// pull` fetches every layer first, so the tests use this instead.
//
// Usage: containerd-pull CONTAINERD_SOCKET REF SNAPSHOTTER
// (REF over plain HTTP: for a registry on loopback). Test-only.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes/docker"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: containerd-pull CONTAINERD_SOCKET REF SNAPSHOTTER")
		os.Exit(2)
	}
	client, err := containerd.New(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "containerd-pull:", err)
		os.Exit(1)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), "default")
	resolver := docker.NewResolver(docker.ResolverOptions{PlainHTTP: true})
	img, err := client.Pull(ctx, os.Args[2], containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(os.Args[3]), containerd.WithResolver(resolver))
	if err != nil {
		fmt.Fprintln(os.Stderr, "containerd-pull:", err)
		os.Exit(1)
	}
	fmt.Println(img.Name())
}
