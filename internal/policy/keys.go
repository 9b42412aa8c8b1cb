package policy

import (
	"crypto/rsa"
	"errors"
	"math/big"
	"sync"

	"github.com/certflow/certflow/internal/pki"
)

// smallPrimeBound: an RSA modulus with a prime factor below it is broken.
const smallPrimeBound = 1 << 14

// smallPrimes is the product of the odd primes below smallPrimeBound, for
// one GCD that finds any of them in a modulus.
var smallPrimes = sync.OnceValue(func() *big.Int {
	sieve := make([]bool, smallPrimeBound)
	product := big.NewInt(1)
	for p := 3; p < smallPrimeBound; p += 2 {
		if sieve[p] {
			continue
		}
		product.Mul(product, big.NewInt(int64(p)))
		for m := p * p; m < smallPrimeBound; m += 2 * p {
			sieve[m] = true
		}
	}
	return product
})

// CheckKeySanity refuses public keys that Go's parser accepts but that no
// certificate should carry: an RSA key larger than pki.MaxRSABits or with
// an exponent other than 65537 (pki.CheckRSAShape), an even modulus, or a modulus with a prime factor below 2^14 (which
// factors it at once). Key types and sizes are the rules' business.
func CheckKeySanity(pub any) error {
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil
	}
	if err := pki.CheckRSAShape(k); err != nil {
		return err
	}
	if k.N.Bit(0) == 0 {
		return errors.New("RSA modulus is even: it is not the product of two large primes")
	}
	if new(big.Int).GCD(nil, nil, new(big.Int).Mod(smallPrimes(), k.N), k.N).Cmp(big.NewInt(1)) != 0 {
		return errors.New("RSA modulus has a small prime factor: the key is broken")
	}
	return nil
}
