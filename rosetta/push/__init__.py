"""Push senders: one small class per provider (FCM via pyfcm, Expo, ntfy/UnifiedPush), one outcome type."""
