// Package secagg is fedq's secure aggregation: SecAgg+ (Bell et al., CCS 2020), the
// neighbour-graph form of Bonawitz et al.'s protocol (CCS 2017). The coordinator learns
// the sum of the agents' updates and nothing else about any one of them; agents that
// drop out at any phase are survived as long as enough of their neighbours remain.
//
// The package is pure protocol logic: a [Client] (one per agent per round) and a
// [Server] (the coordinator's side) exchange the values below, and the caller moves
// them over whatever transport it has. No QUIC, no store, no clock.
//
//	advertise   each agent makes two X25519 key pairs — one to encrypt shares (HPKE),
//	            one to agree pairwise mask keys — and signs their public halves, with a
//	            commitment to its self-mask seed, with its identity key ([Keys]);
//	            the coordinator checks and forwards each agent its neighbours' keys
//	share       each agent Shamir-shares (circl, over Ristretto255) its self-mask seed
//	            b and the scalar its mask key is derived from among its neighbours and
//	            itself, and encrypts each neighbour's shares to it (HPKE auth mode: the
//	            coordinator can neither read nor forge them)
//	masked input  the update, scaled by its weight with the weight appended, clipped
//	            and quantized with stochastic rounding, is masked in Z_2^32 with the
//	            self mask and ± a pairwise mask per neighbour that shared, each expanded
//	            from an HKDF-derived key by AES-256-CTR; the coordinator adds the masked
//	            vectors as they come and keeps none of them
//	unmask      the coordinator names the survivors; each survivor reveals its share
//	            of every surviving neighbour's b and of every dropped neighbour's mask
//	            key — never both for one neighbour, and only once per round — and the
//	            coordinator reconstructs them and removes the masks
//
// Every signature, share ciphertext and mask key is bound to the round's [Config]
// digest, so keys, shares and reveals from another round, task or attempt are refused.
//
// Thresholds. A secret of agent u is shared among its holders H(u) = N(u) ∪ {u}
// (k + 1 of them) and needs Threshold of them. Threshold > (k+1)/2, so two disjoint
// groups of holders can never both reach it: even a coordinator that tells some holders
// that u survived and others that u dropped cannot obtain both u's self mask and its
// mask key. At each phase an agent whose live holders fall below the threshold is
// excluded while that is still safe (before it is masked into anyone's input), and the
// round fails — revealing nothing more — when it no longer is.
//
// Threat model. The coordinator is honest-but-curious about updates and may drop,
// reorder or replay messages; agents' identity certificates come from the coordinator's
// CA, so a coordinator that abuses its CA to mint identities is out of scope (keep the CA
// key offline to remove it). Agents are assumed not to collude with the coordinator
// beyond Threshold − 1 holders of any one secret.
package secagg
