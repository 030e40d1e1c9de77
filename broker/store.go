package broker

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// OpenRedis returns a Redis client for one URL (README "Redis"):
//
//	redis://[user:pass@]host:port/db            one server (rediss:// for TLS)
//	redis-sentinel://[:pass@]h1:p,h2:p/master    Sentinel, failover to master's replicas
//	redis-cluster://[:pass@]h1:p,h2:p            Cluster
func OpenRedis(raw string) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("broker: redis url: %w", err)
	}
	pass, _ := u.User.Password()
	user := u.User.Username()
	hosts := strings.Split(u.Host, ",")
	switch u.Scheme {
	case "redis", "rediss", "unix":
		opt, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("broker: redis url: %w", err)
		}
		opt.PoolSize = max(opt.PoolSize, 256)
		opt.Protocol = 2 // RESP2: the broker needs no push messages, and RESP3's checks cost CPU per reply
		return redis.NewClient(opt), nil
	case "redis-sentinel":
		master := strings.Trim(u.Path, "/")
		if master == "" {
			return nil, fmt.Errorf("broker: redis-sentinel url needs the master name as path")
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: hosts,
			Username: user, Password: pass, PoolSize: 256, Protocol: 2}), nil
	case "redis-cluster":
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: hosts, Username: user, Password: pass, PoolSize: 256, Protocol: 2}), nil
	}
	return nil, fmt.Errorf("broker: redis url scheme %q (want redis, rediss, redis-sentinel, redis-cluster)", u.Scheme)
}
