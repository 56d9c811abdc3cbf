// Package node owns a Switchboard process: it holds the configuration of
// every package in one Config, checks it whole, and starts and stops the
// parts in order.
//
// # Configuration
//
// Config holds storage.Config, delivery.Config and gateway.Config as they
// are, plus the process's own settings (the data folder, the log level, the
// admin listener). Validate applies each package's defaults, runs each
// package's own checks, and then the checks no package can make alone,
// because the limits involved belong to different packages (see
// crosscheck.go): a full delivery window of the largest entries must fit
// the gateway's outbound cap, the largest body must fit a frame and a
// stored value, and so on. It reports every problem at once, each naming
// the setting.
//
// Settings lists every operator setting with its file key, flag,
// environment variable, unit, default and the reason for it; Load reads
// them from a TOML file, the environment (SWITCHBOARD_...) and flags, in
// that order of precedence from lowest to highest, over the defaults.
// docs/CONFIG.md is generated from the same table (a test keeps it so).
//
// # Lifecycle
//
// Start opens the store, starts the router, then the gateway, then the
// admin listener (/healthz, /readyz, /backup, and what Config.AdminRoutes
// adds).
// Stop undoes it in reverse, each step under a deadline, and no package
// stops another's parts:
//
//	gateway.Drain     no new connections, no more frames read
//	router.Stop       commits in flight finish and queue their ACCEPTs
//	gateway.Shutdown  what is queued and a GOAWAY go to every connection
//	store.Close       a store that does not close in time is left as a
//	                  crash would leave it; the next start recovers it
//
// The router gets three quarters of gateway.Config.ShutdownTimeout, the
// gateway the rest, and the store as long again. Stop is idempotent.
//
// A takeover (handover.go) is the third transition, and shares the
// lifecycle's lock with Stop. Every node with a data folder listens on
// Data/handover.sock; a Start with Config.Takeover connects there instead
// of opening the store, and the two processes go through these phases,
// each logged as "handover: …" and bounded:
//
//	old: gateway.Pause, router.Finish, gateway.Flush   ShutdownTimeout
//	old: gateway.Detach, records and sockets sent, store.Close
//	new: store open, router, gateway listening (READY)  HandoverTimeout
//	old: COMMIT, then its engine stops and it ends      ShutdownTimeout
//	new: gateway.Adopt, then it listens on handover.sock
//
// A failure before COMMIT leaves the old node to take its connections back
// (takeBack: the store opened again, a new router, Adopt, Unpause); after
// it, the new node owns them.
package node
