//! Integration tests: real `apogee-nameserver` and `apogee-broker` processes
//! (and the `apogee` CLI) on loopback, driven through the Rust client, raw
//! gRPC and RocketMQ's official Rust client. Build the binaries first:
//! `cargo build --bins`.
//!
//! - [`delivery`]: every message reaches every group exactly once; groups
//!   share work; unacked messages come back after their invisible duration.
//! - [`durability`]: SIGKILL with sync flush loses nothing acknowledged; a
//!   torn commit-log tail is cut back to the last whole record; damage before
//!   the flushed end stops the broker with a clear error.
//! - [`faults`]: servers in network namespaces under faults (SIGKILL, links down, cuts),
//!   judged by the checker: planted losses found, nothing acknowledged lost.
//! - [`faults_failover`]: automatic failover under faults in network namespaces: an
//!   isolated master serves nothing after its lease, a killed master is replaced, and the
//!   checker reports the loss of an unclean election (the negative control).
//! - [`controller_process`]: the controller as its own processes (three `apogee-controller`
//!   voters, two NameServers naming them in `[controller] endpoints`): a killed master is
//!   replaced, a killed controller leader costs the group neither its master nor its writes,
//!   `apogee controller status` shows the remote controller's state.
//! - [`tier`]: the object-store tier against a real S3-compatible server: sealed segments
//!   uploaded whole and recorded, `apogee tier status`, `--check-config` on a bad bucket;
//!   [`tier_failover`]: the master killed during an upload; [`tier_restore`]: a group
//!   restored from the bucket onto empty disks.
//! - [`foreign_store`]: a RocketMQ store as the data dir is refused, named as
//!   one, and left byte for byte as it was.
//! - [`acl`]: authorization: users and ACL entries (allow, deny, prefixes) enforced on a
//!   master, its slave and the NameServer; kept across broker and NameServer restarts.
//! - [`auth`]: authentication: the official client, apogee-client and the CLI with
//!   credentials; wrong, unknown, missing and stale credentials refused, storing nothing.
//! - [`bad_input`]: invalid requests get their specific status codes.
//! - [`nameserver_loss`]: with every NameServer down for 30 s clients keep
//!   producing and consuming and brokers register again when they return; one of
//!   two down goes unnoticed; a broker id held by a live broker is refused at start.
//! - [`liveness`]: a master killed or stopped leaves the routes within 3 s (and a stopped one
//!   comes back after SIGCONT); a restarted NameServer knows the brokers again within 3 s;
//!   a beat stays a few bytes with 10,000 topics.
//! - [`lite`]: lite topics: shared and exclusive lite consumers, partial and complete syncs,
//!   offset options, the lite limits, expiry, subscriptions back after a broker restart.
//! - [`lifecycle`]: SIGTERM under load: nothing acknowledged lost, out of the routes at once.
//! - [`metrics`]: `/metrics` after a known workload; `/healthz` and `/readyz`.
//! - [`official_client`]: the `rocketmq` crate works through the NameServer; its receipts
//!   and delivered properties are RocketMQ's (transaction id, `__transactionId__`,
//!   `__SHARDINGKEY`).
//! - [`client_failover`]: apogee-client's producer and simple consumer follow a master's
//!   SIGKILL in controller mode (the route fetched again after a failed call), nothing lost.
//! - [`official_client_failover`]: the `rocketmq` crate's producer and simple consumer go on
//!   across a master's SIGKILL in controller mode, the same objects, nothing acknowledged lost.
//! - [`failover_ack`]: `[failover] ack`: `min_in_sync` acknowledges past a stopped slave,
//!   `all_in_sync` waits until the controller dropped it from the in-sync set.
//! - [`rolling_restart`]: `apogee cluster rolling-restart` with a restart command the test
//!   serves, under a send load: the slave, then the master after a planned switch, each once,
//!   nothing acknowledged lost.
//! - [`official_go`]: RocketMQ's official Go clients, unchanged: rocketmq-client-go/v2's
//!   sends, push consumer, transactions and delay levels over remoting; the 5.x Go client's
//!   producer, SimpleConsumer, FIFO and transactions over gRPC (skipped without Go, except
//!   under CI).
//! - [`official_java`]: RocketMQ's official Java clients, 5.x over gRPC and 4.x over remoting:
//!   sends of every kind, FIFO, delay, transactions with check-back, push, pull and orderly
//!   consumers, retries to the dead-letter queue, in one JVM (skipped without java and mvn,
//!   except under CI).
//! - [`official_python`]: RocketMQ's official Python client: the receive stream's hand-out
//!   time it needs, its PushConsumer and delayed send (skipped without python3 and the
//!   package, except under CI).
//! - [`operations`]: `group reset-offset`, `clients list`, `broker config get|set`,
//!   mqadmin's command names.
//! - [`cluster_trust`]: the cluster secret: a broker without it cannot register, a fake
//!   slave cannot open the replication stream.
//! - [`cli`]: the admin CLI's tables, JSON and exit codes.
//! - [`cli_consume`]: `apogee consume` over two broker groups returns once `--max` arrived;
//!   the CLI's and `bench consume`'s consumers are listed by `clients list` and `group describe`.
//! - [`cli_edges`]: the CLI's edges: stored-not-replicated sends, `--nack`, the cluster's body
//!   limit, the TLS hint, Ctrl-C and closed pipes, durations, brokers by name.
//! - [`readme_tour`]: the README's tour run line by line, as written, on a fresh standalone.
//! - [`cli_mqadmin`]: mqadmin's command lines with their short options against a cluster; a
//!   `-c` naming an unknown cluster, an option Apogee has no meaning for, refused.
//! - [`cli_nameservers`]: NameServer lists with `;` or `,`: admin commands go on through the
//!   next NameServer when the first cannot be reached; a broker takes such a list from the
//!   environment; `--check-config` names a bad address.
//! - [`config_import`]: `apogee config import` turns a RocketMQ broker.conf into a
//!   TOML `apogee-broker --check-config` accepts; bad values exit 1 naming key and line;
//!   ACLs on give authentication on and the steps (secret files, plain_acl.yml's users).
//! - [`console_browser`]: the web console in a headless Chromium (WebDriver): sign-in, a
//!   topic created, a test message sent and found by key, a group's lag, an offset reset, a
//!   dead letter resent, the rates charts (skipped without Chromium, except under CI).
//! - [`console_core`]: the web console's cluster page and sign-in over HTTP: a wrong secret
//!   refused, the CSRF token and Origin required, a plain user not offered the admin pages.
//! - [`console_groups`]: the console's consumer groups pages over HTTP: sorted by lag, a
//!   group's queues and clients, an offset reset planned then executed, dead letters resent.
//! - [`console_ops`]: the console's transactions, scheduled and users and ACLs pages over
//!   HTTP: commit, roll back, recall, users and grants, each confirmed first; a plain user refused.
//! - [`console_messages`]: the console's messages pages over HTTP: found by id, key and
//!   offset; a message's properties, its body as text or as hex cut at 64 KiB, the groups
//!   holding it in flight; a plain user refused.
//! - [`console_topics`]: the console's topics pages over HTTP: the list filtered and paged
//!   on the server, a topic created, sent a test message, updated, deleted after typing its
//!   name; refused without the CSRF token, and to a user who is not an admin.
//! - [`consumer_groups`]: retries with the group's backoff, FIFO message groups,
//!   auto-renew receives, forwarding to the dead-letter queue, body encoding and digest.
//! - [`consumer_lag`]: lag counts every queue of every topic a group consumes, on every
//!   broker group, also the ones it never received from (describe and `/metrics`); where a
//!   group its first receive creates starts (`consume.auto_create_start`), and what
//!   `apogee consume` says about it.
//! - [`dead_letters`]: a message never acked ends in `%DLQ%<group>` with its id and
//!   properties, is read there, listed and resent by `apogee dlq`, and resent only once.
//! - [`deploy_kit`]: `deploy/local-cluster.sh` start, serve and stop; the systemd units;
//!   the compose file and Helm chart where docker and helm are installed.
//! - [`filters`]: SQL92 property filters select exactly their messages per
//!   group (receive and pull), tag filters alongside, malformed ones refused.
//! - [`import_state`]: `apogee config import-state` of a RocketMQ broker's config/ files: the
//!   plan, then topics, groups, positions, users (with their secrets) and ACL entries applied.
//! - [`index_rebuild`]: `apogee-broker --rebuild-index`: `/readyz` shows the rebuild, a
//!   SIGKILL midway makes the next start rebuild again, nothing lost.
//! - [`groups`]: `apogee group create|update|list|describe|delete` through the
//!   NameServer, the lag a known workload leaves, refusing unknown groups without
//!   auto-creation, and the group's config in consumers' Settings replies.
//! - [`push_consumer`]: the Rust push consumer: concurrency, graceful shutdown,
//!   retries with rising attempts, invisibility renewal, FIFO order.
//! - [`priority`]: priority messages: a backlog of priorities 0-9 received highest first and
//!   in send order within one (10 queues; 8 queues where 7-9 share the top), refusals.
//! - [`query`]: `apogee message get|find|print` by id, key and queue range, with the
//!   delivery attempts of groups holding a message; clear errors for unknown ones.
//! - [`quiet_logs`]: no alarming line without cause: a controller restarted on its data, a
//!   broker stopped gracefully, one NameServer of three lost (one warning, no Raft errors).
//! - [`quotas`]: a client over its send quota gets TOO_MANY_REQUESTS, another does not.
//! - [`remoting_frames`]: remoting frames by hand on the broker's and NameServer's gRPC
//!   port: unknown codes answered REQUEST_CODE_NOT_SUPPORTED in the request's serialization;
//!   a malformed or oversize frame closes only its connection, nothing acknowledged is lost.
//! - [`remoting_client`], [`remoting_groups`], [`remoting_txn`]: RocketMQ's Rust remoting
//!   client (`rocketmq-client-rust`): sync, batch, ordered and delayed sends, push, orderly
//!   and broadcast consumers, a group rebalancing when a member stops, retries and dead
//!   letters, transactions with check-backs, messages crossing to and from gRPC clients
//!   (helpers in [`remoting_support`]).
//! - [`remoting_producer`]: apogee-client's producer over remoting frames: stored and
//!   consumed as sent, signed with credentials, dialling again after a broker restart, and
//!   `apogee bench produce --transport remoting`.
//! - [`remoting_pop`]: the pop consumption of 5.x remoting clients by hand-written frames: a
//!   popped message acknowledged is done, one not acknowledged comes back; a remoting
//!   producer's `flag` is read back by pop and pull consumers.
//! - [`replication`]: SYNC and ASYNC masters with slaves killed (SIGKILL) and paused
//!   (SIGSTOP), masters killed mid-load, acks on a slave while its master is down, and a
//!   slave with records its master never wrote.
//! - [`slave_serving`]: routes present a group as broker id 0 with every member's address,
//!   the serving one first; a slave passes sends, receives and acks to its master (stored
//!   and delivered once, also for the official crate spreading calls over both), serves
//!   reads and refuses writes with HA_NOT_AVAILABLE while the master is away.
//! - [`schedule`]: delayed messages delivered once on time (also across
//!   SIGKILL), limits, recall, the official client's delay send.
//! - [`startup`]: start-up failures end in one clear line (a data dir in use).
//! - [`tls`]: TLS on every listener: apogee-client and the official client over TLS, plain
//!   text refused, the CLI with `--tls`, certificate reload, mutual TLS for cluster calls.
//! - [`transactions`]: half messages, commit/rollback, check-backs, parking,
//!   forwarding through the NameServer, crash safety.

mod acl;
mod auth;
mod bad_input;
mod bench;
mod cli;
mod cli_consume;
mod cli_edges;
mod cli_mqadmin;
mod cli_nameservers;
mod client_failover;
mod cluster_trust;
mod config_import;
mod console_browser;
mod console_core;
mod console_groups;
mod console_messages;
mod console_ops;
mod console_topics;
mod consumer_groups;
mod consumer_lag;
mod controller_cli;
mod controller_process;
mod dead_letters;
mod delivery;
mod deploy_kit;
mod durability;
mod failover;
mod failover_ack;
mod failover_ops;
mod failover_rejoin;
mod faults;
mod faults_failover;
mod filters;
mod foreign_store;
mod groups;
mod grpc_edges;
mod import_state;
mod index_rebuild;
mod java_tools;
mod lifecycle;
mod lite;
mod liveness;
mod metrics;
mod nameserver_loss;
mod official_client;
mod official_client_failover;
mod official_go;
mod official_java;
mod official_mqadmin;
mod official_python;
mod official_roundtrip;
mod operations;
mod priority;
mod push_consumer;
mod query;
mod quiet_logs;
mod quotas;
mod read_paths;
mod readme_tour;
mod remoting_client;
mod remoting_frames;
mod remoting_groups;
mod remoting_pop;
mod remoting_producer;
mod remoting_support;
mod remoting_txn;
mod replication;
mod rolling_restart;
mod schedule;
mod slave_serving;
mod startup;
mod store_limits;
mod tier;
mod tier_failover;
mod tier_restore;
mod tls;
mod traffic;
mod transactions;
