// Package dataset loads training data for fedq's compute backend.
package dataset
