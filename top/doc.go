// Package top is what `switchboard top` shows: the queues and rates of one
// server or a cluster at a glance, refreshed live.
//
// A Scraper reads each server's Prometheus /metrics (the admin listener,
// docs/METRICS.md) into a Sample. NewFrame turns two successive rounds of
// samples into Figures per server and summed over the cluster: counters
// become rates over the interval between the two scrapes, the
// send→ACCEPT histogram's bucket counts over that interval give its p99,
// and each queue is compared with its capacity. Over marks what is over
// its limit: a queue at or near its capacity (QueueNear), slow-consumer
// closes rising, free disk under DiskFreeMin, more than one sync per
// message, store errors, a server not answering or not ready.
//
// Model is the bubbletea program that scrapes every Config.Every and draws
// a Frame; Frame.Render draws the same screen as plain text, which is what
// `switchboard top --once` prints. A server that does not answer is shown
// as down; it never stops the others being shown.
package top
