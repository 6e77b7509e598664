package config

// Serial is one PLC link ([[serial]]). The bridge helper owns this file.
type Serial struct {
	Name   string `toml:"name"`
	Device string `toml:"device"`
	Baud   int    `toml:"baud"`
}

func (s *Serial) applyDefaults() {
	if s.Baud == 0 {
		s.Baud = 115200
	}
}

func (s *Serial) validate(v *validator, path string) {
	if s.Name == "" {
		v.errf(path+".name", "required")
	}
	if s.Device == "" {
		v.errf(path+".device", "required")
	}
}

// Alarm is one alarm template ([[alarm]]); Code nil is the default template.
type Alarm struct {
	Code    *int     `toml:"code"`
	Subject string   `toml:"subject"`
	Body    string   `toml:"body"`
	To      []string `toml:"to"`
}

func (a *Alarm) validate(v *validator, path string) {}

// Flood configures hold-off and digests ([flood]).
type Flood struct{}

func defaultFlood() Flood { return Flood{} }

func (f *Flood) validate(v *validator) {}
