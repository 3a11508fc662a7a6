package secagg

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchRound brings a round of n members with dim values to the unmask phase, with
// the given share of members dropped after sharing keys; it returns the server, the
// survivors' reveals and the clients.
func benchRound(b *testing.B, n, dim int, dropout float64) (*Server, []string, map[string]map[string][]byte) {
	b.Helper()
	ch, err := ChooseGraph(n, DefaultDropout, DefaultFailureProbability)
	if err != nil {
		b.Fatal(err)
	}
	r := newRound(config(n, ch.Neighbours, ch.Threshold, dim+1), 1)
	srv, cs, fw := shareKeys(b, r.cfg, r.ids)
	drop := int(float64(n) * dropout)
	for i, m := range r.cfg.Members {
		if err := cs[m].ReceiveShares(fw[m]); err != nil {
			b.Fatal(err)
		}
		if i%(n/max(drop, 1)) == 0 && drop > 0 {
			drop--
			continue // drops before sending its masked input
		}
		y, err := cs[m].MaskedInput(r.updates[m], r.weights[m], quantRNG(m))
		if err != nil {
			b.Fatal(err)
		}
		if err := srv.AddMasked(m, y); err != nil {
			b.Fatal(err)
		}
	}
	surv, err := srv.CloseMasked()
	if err != nil {
		b.Fatal(err)
	}
	reveals := make(map[string]map[string][]byte, len(surv))
	for _, m := range surv {
		if reveals[m], err = cs[m].Unmask(surv); err != nil {
			b.Fatal(err)
		}
	}
	return srv, surv, reveals
}

// BenchmarkUnmask is the coordinator's unmasking: taking every survivor's reveals,
// reconstructing the secrets and removing the masks (issue 6's goal: n=500, 100k
// parameters, 10% dropout, ≤ 1 s).
func BenchmarkUnmask(b *testing.B) {
	for _, tc := range []struct {
		n, dim  int
		dropout float64
	}{{500, 100_000, 0.1}, {100, 1_000_000, 0.1}} {
		b.Run(fmt.Sprintf("n=%d/dim=%d/dropout=%g", tc.n, tc.dim, tc.dropout), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				srv, surv, reveals := benchRound(b, tc.n, tc.dim, tc.dropout)
				b.StartTimer()
				for _, m := range surv {
					if err := srv.AddReveals(m, reveals[m]); err != nil {
						b.Fatal(err)
					}
				}
				if _, _, err := srv.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClient is one agent's work in a round: keys, shares, opening its
// neighbours' shares, masking and unmasking — all but training and the network.
func BenchmarkClient(b *testing.B) {
	for _, tc := range []struct{ n, dim int }{{10, 100_000}, {100, 1_000_000}, {500, 100_000}} {
		b.Run(fmt.Sprintf("n=%d/dim=%d", tc.n, tc.dim), func(b *testing.B) {
			ch, _ := ChooseGraph(tc.n, DefaultDropout, DefaultFailureProbability)
			r := newRound(config(tc.n, ch.Neighbours, ch.Threshold, tc.dim+1), 1)
			me := r.cfg.Members[0]
			var sent, recv int
			var ro map[string][]Keys
			for b.Loop() {
				b.StopTimer()
				// Everyone else's part, untimed, to give this member its inputs.
				srv, _ := NewServer(r.cfg, r.ids)
				cs := map[string]*Client{}
				for i, m := range r.cfg.Members {
					cs[m], _ = NewClient(r.cfg, m, signer(r.ids.keys[m]), r.ids, newDetRand(uint64(i)))
					if m == me {
						b.StartTimer()
					}
					k, _ := cs[m].Advertise(r.ids.cred(m))
					b.StopTimer()
					if err := srv.AddKeys(k); err != nil {
						b.Fatal(err)
					}
				}
				var err error
				ro, err = srv.CloseAdvertise()
				if err != nil {
					b.Fatal(err)
				}
				var cts map[string][]byte
				for _, m := range r.cfg.Members {
					if m == me {
						b.StartTimer()
					}
					c, err := cs[m].ShareKeys(ro[m])
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					if m == me {
						cts = c
					}
					_ = srv.AddShares(m, c)
				}
				fw, err := srv.CloseShares()
				if err != nil {
					b.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				b.StartTimer()
				if err := cs[me].ReceiveShares(fw[me]); err != nil {
					b.Fatal(err)
				}
				y, err := cs[me].MaskedInput(r.updates[me], r.weights[me], rng)
				if err != nil {
					b.Fatal(err)
				}
				rv, err := cs[me].Unmask(r.cfg.Members)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				// Payload bytes of the key exchange (without the masked vector, which
				// is the size of a plain update, and without certificates).
				k, _ := cs[me].Advertise(nil)
				sent = 3*32 + len(k.Signature)
				for _, ct := range cts {
					sent += len(ct)
				}
				for m, v := range rv {
					sent += len(m) + len(v)
				}
				recv = 0
				for _, p := range ro[me] {
					recv += len(p.Member) + 3*32 + len(p.Signature)
				}
				for m, ct := range fw[me] {
					recv += len(m) + len(ct)
				}
				for _, m := range r.cfg.Members {
					recv += len(m)
				}
				_ = y
				b.StartTimer()
			}
			b.ReportMetric(float64(sent), "sent-B")
			b.ReportMetric(float64(recv), "received-B")
			b.ReportMetric(float64(len(ro[me])), "neighbours")
		})
	}
}
