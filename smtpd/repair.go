package smtpd

import "github.com/plcmail/plcmail/mailer"

// repairInfo and repair are the listener's names for mailer.Repair, the one
// message cleanup that `plcmail send` shares (as Postfix's smtpd and sendmail
// share cleanup(8)); the listener adds the Received field and keeps Bcc.
// They only keep Data's call site in server.go as it is.
type repairInfo = mailer.RepairInfo

func repair(data []byte, info repairInfo) []byte { return mailer.Repair(data, info) }
