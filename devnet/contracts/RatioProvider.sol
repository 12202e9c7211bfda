// SPDX-License-Identifier: MIT
pragma solidity 0.8.20;

/// The exchange rate of an LST-like token to its base asset (18 decimals: 1.2e18 means one
/// token is worth 1.2 of the base), set by its owner, as a rebase would move it. Shaped like
/// the rate providers Aave's CAPO ratio adapters read (`getRate()`, Balancer/rETH style), and
/// emits an event whenever the rate changes, as an LST's rebase does.
contract RatioProvider {
    event RateUpdated(uint256 previousRate, uint256 newRate, uint256 updatedAt);

    uint8 public constant decimals = 18;
    address public immutable owner;
    string public description;
    uint256 private rate;

    constructor(string memory description_, uint256 initialRate) {
        owner = msg.sender;
        description = description_;
        _setRate(initialRate);
    }

    function setRate(uint256 newRate) external {
        require(msg.sender == owner, "RatioProvider: not the owner");
        _setRate(newRate);
    }

    function getRate() external view returns (uint256) {
        return rate;
    }

    function _setRate(uint256 newRate) private {
        require(newRate > 0, "RatioProvider: rate must be positive");
        emit RateUpdated(rate, newRate, block.timestamp);
        rate = newRate;
    }
}
