throw new Error('wrtc is not installed (tests/support/ipfs/no-wrtc)');
