package warm

import (
	_ "github.com/go-zookeeper/zk"
	_ "github.com/mesos/mesos-go/api/v1/lib"
	_ "github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	_ "github.com/mesos/mesos-go/api/v1/lib/executor"
	_ "github.com/mesos/mesos-go/api/v1/lib/executor/calls"
	_ "github.com/mesos/mesos-go/api/v1/lib/httpcli/httpexec"
	_ "github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	_ "github.com/mesos/mesos-go/api/v1/lib/scheduler"
	_ "github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	_ "k8s.io/klog/v2"
)
