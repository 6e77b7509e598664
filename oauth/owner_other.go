//go:build !unix

package oauth

import "os"

func giveToDirOwner(*os.File, string) error { return nil }
func giveToParentOwner(string)              {}

// lockFile is a no-op where flock does not exist: there, two processes
// refreshing at the same moment may make one of them sign in again.
func lockFile(string) (func(), error) { return func() {}, nil }
