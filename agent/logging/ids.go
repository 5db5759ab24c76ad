package logging

import (
	"strings"

	"go.uber.org/zap"
)

// Stable MESSAGE_IDs, one per kind of event, so that an operator can
// alert on `journalctl -u ec2net MESSAGE_ID=…` whatever the wording.
// Never change one; add new ones. Listed in docs/STATUS.md.
const (
	MsgStarting        = "18655e796ee4412e9564890531d72310" // the daemon starts
	MsgStopping        = "0bffbdaa601541e490ce8f939d3b68e3" // the daemon stops (configuration left in place)
	MsgConfigured      = "dc84dd114e324456b26657b9e6a2a6ac" // an object added (address, route, rule, link setting)
	MsgRemoved         = "ad3a836ae38d4c5e8256015e1ef79027" // an object removed (address gone from IMDS, ENI detached)
	MsgLinkAppeared    = "dc6233e1facd428a970b93b4e2581afc" // a link appeared (attach)
	MsgLinkRemoved     = "cd8a05cabed94bfb822f394542169b3b" // a link went away (detach): info, not an error
	MsgENIListed       = "035790b0e9e4420a9dca99f1ee7062db" // IMDS lists an ENI (or again complete)
	MsgENIPending      = "59f29eb6016942fe8964aa4fa8798376" // an ENI is still propagating in IMDS, or has nothing to configure
	MsgENIMetadata     = "3047f936642e457d8772f14bb4d3426d" // an ENI's metadata is invalid or unknown: configuration kept as is
	MsgENIUnlisted     = "e207310b2a534e63bd44dd1573b4c22c" // IMDS no longer lists an ENI
	MsgENINoLink       = "2f85ab0278b24a9fbfba6f2989d806aa" // IMDS lists an ENI no link here has (detach in progress)
	MsgRepaired        = "385da8ec41d7482da264845417b14a7a" // restored what another program deleted (warning)
	MsgFight           = "79ec745b2f4747e7b6cffef0bee4ed0b" // another program keeps deleting: repairs back off (warning)
	MsgIMDSFailed      = "d10f5d13cea0430e9dcda0f4aa22bf23" // an IMDS read failed (once per kind of failure)
	MsgIMDSBack        = "739aa154d4c24e0b94c8f83351989260" // IMDS answers again
	MsgReconcileFailed = "30a115e6491b4cf3ab6a1ce87c78c5ca" // a reconcile pass failed (the kernel could not be read or the record written)
	MsgChangeFailed    = "1b50599d3ff944b09670b60038da151d" // one change failed (error: needs a person)
	MsgForeign         = "ec276448efc74590a262f4333f19557c" // a foreign object in ec2net's range, left alone (once)
	MsgPathBroken      = "e96b5812ec754d029a34f2d1247c2455" // an ENI's address is off its path (shadowed, wrong-path, link-down, rp-filter)
	MsgPathRestored    = "fa6ad9d8badc434a97d0ec11de47d8ab" // every address of an ENI is back on its path
	MsgHostCheck       = "e0af6bd918ff4dacafb24b34e38d5a41" // a competing network manager or host setting found
	MsgReadyDegraded   = "d9673218fa5b4dfe94fd026b021a1ce0" // READY=1 sent without an IMDS answer
	MsgEventsLost      = "45b4589d39434c549bd187b88310da91" // the netlink subscription ended: resubscribed, everything re-read
)

// ID is the zap field that sets an entry's MESSAGE_ID explicitly (it
// wins over the table below).
func ID(id string) zap.Field { return zap.String(messageIDKey, id) }

const messageIDKey = "message_id"

// byMessage gives the entries logged without an explicit ID theirs, by
// their message: exact texts, and prefixes for messages built at run
// time. A test checks that every text still occurs in the code.
var byMessage = []struct {
	text   string
	prefix bool
	id     string
}{
	{"ec2net starting", false, MsgStarting},
	{"ec2net stopping; configuration left in place", false, MsgStopping},
	{"configured", false, MsgConfigured},
	{"removed", false, MsgRemoved},
	{"link appeared", false, MsgLinkAppeared},
	{"link removed (ENI detached)", false, MsgLinkRemoved},
	{"ENI listed in IMDS", false, MsgENIListed},
	{"ENI metadata complete again", false, MsgENIListed},
	{"ENI pending (IMDS still propagating)", false, MsgENIPending},
	{"ENI listed without addresses or a link (EFA-only): nothing to configure", false, MsgENIPending},
	{"ENI metadata ", true, MsgENIMetadata},
	{"ENI no longer listed in IMDS (its configuration stays while its link exists)", false, MsgENIUnlisted},
	{"ENI listed in IMDS but no link has its MAC here (detached, or not attached yet)", false, MsgENINoLink},
	{"restored what another program deleted", false, MsgRepaired},
	{"another program keeps deleting what ec2net restores; backing off", false, MsgFight},
	{"IMDS read failed; keeping the current configuration", false, MsgIMDSFailed},
	{"IMDS answering again", false, MsgIMDSBack},
	{"reconcile failed", false, MsgReconcileFailed},
	{"change failed", false, MsgChangeFailed},
	{"foreign object left alone", false, MsgForeign},
	{"IMDS has not answered: reporting ready, degraded", false, MsgReadyDegraded},
	{"netlink event subscription ended; resubscribing and re-reading", false, MsgEventsLost},
}

// idFor returns the MESSAGE_ID of a message, "" when it has none.
func idFor(msg string) string {
	for _, m := range byMessage {
		if msg == m.text || m.prefix && strings.HasPrefix(msg, m.text) {
			return m.id
		}
	}
	return ""
}
