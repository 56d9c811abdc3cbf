// Package client is the client side of Switchboard's protocol, for Go
// applications to embed.
package client
