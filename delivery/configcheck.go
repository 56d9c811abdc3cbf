package delivery

// WithDefaults returns c with every zero field set to its default, as New
// sets it. The owner of the process uses it to check settings against other
// packages' and to print the configuration in force.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

// Validate reports every invalid field of c, after defaults, at once, as
// New does.
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}
