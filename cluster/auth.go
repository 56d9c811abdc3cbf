package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// Nodes prove to each other's embedded NATS servers that they hold the
// cluster's token keys (Config.Keys), the keys file every node already
// shares: a route, and the node's own client connection, log in with the
// user name of a key's id and a password derived from that key and the
// cluster's name. A server admits any key it holds, so a key rotation
// (a new key added on every node, then the old one retired) never splits
// the cluster: while one side lacks the other's newest key, the route the
// other way is admitted, and one route between two servers is enough.
//
// This authenticates; it does not encrypt. The routes and NATS client
// listeners carry who sends to whom in the clear (the bodies are the
// clients' end-to-end ciphertext): they belong on a private network
// (docs/CLUSTER.md, "Security").

// authLabel separates the cluster's passwords from every other use of the
// token keys (tokens are MACs of their binary encoding, never of this).
const authLabel = "switchboard cluster auth v1\x00"

// password derives the NATS password of key for cluster name.
func password(key []byte, name string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(authLabel))
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))
}

// credentials returns the user and password this node logs in with: its
// newest key's.
func (c Config) credentials() (user, pass string) {
	var newest uint32
	for id := range c.Keys {
		newest = max(newest, id)
	}
	return strconv.FormatUint(uint64(newest), 10), password(c.Keys[newest], c.Name)
}

// routeURL is the route to addr, carrying this node's credentials.
func (c Config) routeURL(addr string) *url.URL {
	user, pass := c.credentials()
	return &url.URL{Scheme: "nats-route", User: url.UserPassword(user, pass), Host: addr}
}

// keyAuth admits a route or client that logs in with one of the keys
// (nats-server's Authentication).
type keyAuth struct {
	name string
	keys map[uint32][]byte // immutable
}

func (a keyAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	id, err := strconv.ParseUint(o.Username, 10, 32)
	if err != nil {
		return false
	}
	key, ok := a.keys[uint32(id)]
	return ok && hmac.Equal([]byte(password(key, a.name)), []byte(o.Password))
}
