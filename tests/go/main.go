// Command go-clients runs scenarios of RocketMQ's official Go clients, unchanged, against a
// running cluster: rocketmq-client-go/v2 over remoting (sends, push consumers, transactions,
// delay levels) and the 5.x Go client of apache/rocketmq-clients over gRPC (producer,
// SimpleConsumer, FIFO, transactions).
//
//	go-clients -namesrv HOST:PORT -endpoint HOST:PORT SCENARIO...   runs the scenarios
//	go-clients resources                                           lists the topics and groups they need
//
// Running, it prints `PASS name` or `FAIL name: reason` for each scenario (in the order
// given) and exits 1 when any failed. The scenarios run at the same time, each with topics
// and groups of its own.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/rlog"
	rmq "github.com/apache/rocketmq-clients/golang/v5"
)

// A topic a scenario needs: its queues and the message types it accepts.
type topicSpec struct {
	name   string
	queues int
	types  []string
}

// A scenario: what it needs created before it runs, and what it does.
type scenario struct {
	name   string
	topics []topicSpec
	// Consumer groups; FIFO ones hand out a message group's messages one at a time.
	groups     []string
	fifoGroups []string
	run        func(env) error
}

// Where the scenarios find the cluster.
type env struct {
	// The NameServer's remoting address (rocketmq-client-go/v2).
	namesrv string
	// The gRPC endpoint (the 5.x client).
	endpoint string
}

// Every scenario, remoting then gRPC.
func scenarios() []scenario {
	return append(remotingScenarios(), grpcScenarios()...)
}

// How long one scenario may take.
const scenarioTimeout = 90 * time.Second

func main() {
	namesrv := flag.String("namesrv", "", "the NameServer's remoting address (HOST:PORT)")
	endpoint := flag.String("endpoint", "", "the gRPC endpoint (HOST:PORT)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s -namesrv HOST:PORT -endpoint HOST:PORT SCENARIO...\n"+
			"       %s resources\nscenarios:", os.Args[0], os.Args[0])
		for _, s := range scenarios() {
			fmt.Fprintf(os.Stderr, " %s", s.name)
		}
		fmt.Fprintln(os.Stderr)
	}
	flag.Parse()
	if flag.NArg() == 1 && flag.Arg(0) == "resources" {
		printResources()
		return
	}
	if *namesrv == "" || *endpoint == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	known := map[string]scenario{}
	for _, s := range scenarios() {
		known[s.name] = s
	}
	var chosen []scenario
	for _, name := range flag.Args() {
		s, ok := known[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown scenario %q\n", name)
			flag.Usage()
			os.Exit(2)
		}
		chosen = append(chosen, s)
	}
	setUpClientLogs()
	if !report(chosen, runAll(chosen, env{namesrv: *namesrv, endpoint: *endpoint})) {
		os.Exit(1)
	}
}

// Prints what the scenarios need, one line each: `topic NAME QUEUES TYPE[,TYPE...]`,
// `group NAME` or `fifo-group NAME`.
func printResources() {
	for _, s := range scenarios() {
		for _, t := range s.topics {
			fmt.Printf("topic %s %d %s\n", t.name, t.queues, strings.Join(t.types, ","))
		}
		for _, g := range s.groups {
			fmt.Printf("group %s\n", g)
		}
		for _, g := range s.fifoGroups {
			fmt.Printf("fifo-group %s\n", g)
		}
	}
}

// Runs every scenario at once; the error of each (nil: passed), in the order given.
func runAll(chosen []scenario, e env) []error {
	results := make([]error, len(chosen))
	var wg sync.WaitGroup
	for i, s := range chosen {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runOne(s, e)
		}()
	}
	wg.Wait()
	return results
}

// Runs one scenario, turning a panic or a hang into its failure.
func runOne(s scenario, e env) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("panic: %v", r)
			}
		}()
		done <- s.run(e)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(scenarioTimeout):
		return fmt.Errorf("not done after %s", scenarioTimeout)
	}
}

// Prints each scenario's outcome; whether all passed.
func report(chosen []scenario, results []error) bool {
	ok := true
	for i, s := range chosen {
		if results[i] == nil {
			fmt.Printf("PASS %s\n", s.name)
		} else {
			ok = false
			reason := strings.ReplaceAll(results[i].Error(), "\n", " ")
			fmt.Printf("FAIL %s: %s\n", s.name, reason)
		}
	}
	return ok
}

// The 5.x client's log root (its default is $user.home/logs/rocketmqlogs, / when that
// variable is unset).
const grpcLogRoot = "rocketmq.client.logRoot"

// Sends the v2 client's log to standard error, warnings and worse only (unless
// ROCKETMQ_GO_LOG_LEVEL says otherwise), and the 5.x client's to its file under
// $rocketmq.client.logRoot, by default in the temporary directory.
func setUpClientLogs() {
	if os.Getenv("ROCKETMQ_GO_LOG_LEVEL") == "" {
		rlog.SetLogLevel("warn")
	}
	if os.Getenv(grpcLogRoot) == "" {
		os.Setenv(grpcLogRoot, filepath.Join(os.TempDir(), "rocketmq-go-clients"))
		rmq.ResetLogger()
	}
}
