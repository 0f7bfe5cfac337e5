package main

import (
	"crypto/rand"
	"errors"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// user is an account of the login backend. A real backend keeps its users in
// a database; sessiond only ever sees the id and the email.
type user struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	hash  []byte // bcrypt hash of the password
}

// users is an in-memory user store, filled at start and read-only after, so
// safe for concurrent reads without a lock.
type users struct {
	byEmail map[string]*user
	cost    int
	// dummy is the hash compared against when the email is unknown, so that
	// a wrong email takes as long as a wrong password.
	dummy []byte
}

// maxPasswordBytes is bcrypt's limit: it ignores what comes after.
const maxPasswordBytes = 72

// newUsers returns an empty store hashing with bcrypt at cost
// (bcrypt.DefaultCost in production; bcrypt.MinCost keeps tests fast).
func newUsers(cost int) (*users, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return nil, err
	}
	return &users{byEmail: map[string]*user{}, cost: cost, dummy: dummy}, nil
}

// normalizeEmail is the form emails are looked up in.
func normalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// add creates a user, hashing the password. Call it before serving.
func (u *users) add(id, email, password string) error {
	email = normalizeEmail(email)
	if _, ok := u.byEmail[email]; ok {
		return errors.New("users: duplicate email " + email)
	}
	if password == "" {
		return errors.New("users: empty password")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), u.cost)
	if err != nil {
		return err
	}
	u.byEmail[email] = &user{ID: id, Email: email, hash: hash}
	return nil
}

// authenticate returns the user whose email and password these are. It runs
// one bcrypt comparison whatever the outcome, so that its timing does not
// tell an unknown email from a wrong password.
func (u *users) authenticate(email, password string) (*user, bool) {
	usr, ok := u.byEmail[normalizeEmail(email)]
	hash := u.dummy
	if ok {
		hash = usr.hash
	}
	if len(password) > maxPasswordBytes {
		password = "" // never matches, and bcrypt would ignore the tail
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !ok {
		return nil, false
	}
	return usr, true
}
