package config

// SMTP configures the optional listener for Ethernet boards ([smtp]).
// The listener helper owns this file and extends it.
type SMTP struct {
	Listen          []string `toml:"listen"`
	AllowedNetworks []string `toml:"allowed_networks"`
	MaxMessageBytes int64    `toml:"max_message_bytes"`
}

func (s *SMTP) applyDefaults() {
	if s.MaxMessageBytes == 0 {
		s.MaxMessageBytes = 1 << 20
	}
	if s.AllowedNetworks == nil {
		s.AllowedNetworks = []string{"127.0.0.0/8", "::1/128"}
	}
}

func (s *SMTP) validate(v *validator) {
	if len(s.Listen) == 0 {
		v.errf("smtp.listen", "required: at least one address to listen on")
	}
}
