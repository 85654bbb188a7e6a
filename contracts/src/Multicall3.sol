// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The aggregate3 entry point of the canonical Multicall3, re-implemented (same ABI and
///         semantics) so every chain Basement deploys to can batch its gate checks into one eth_call.
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function aggregate3(Call3[] calldata calls) public payable returns (Result[] memory returnData) {
        uint256 length = calls.length;
        returnData = new Result[](length);
        for (uint256 i = 0; i < length; ++i) {
            Call3 calldata c = calls[i];
            Result memory r = returnData[i];
            (r.success, r.returnData) = c.target.call(c.callData);
            if (!r.success && !c.allowFailure) {
                revert("Multicall3: call failed");
            }
        }
    }

    function getBlockNumber() external view returns (uint256) {
        return block.number;
    }

    function getChainId() external view returns (uint256) {
        return block.chainid;
    }
}
