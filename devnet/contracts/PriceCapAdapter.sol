// SPDX-License-Identifier: MIT
pragma solidity 0.8.20;

interface IBaseAggregator {
    function latestAnswer() external view returns (int256);
}

interface IRateProvider {
    function getRate() external view returns (uint256);
}

/// A price adapter in the shape of Aave's CAPO adapters (bgd-labs aave-capo), written for the
/// devnet: the price an AaveOracle reads is
///     min(BASE_TO_USD_AGGREGATOR.latestAnswer() * getRatio() / 10**RATIO_DECIMALS, priceCap)
/// (Solidity's integer division: a floor, every factor being positive), or 0 when the base
/// price or the ratio is not positive, as CAPO returns. Like CAPO it offers only
/// `latestAnswer()`, `decimals()` and `description()` for the price (no `latestRoundData`,
/// no price events); its only event is `PriceCapUpdated`, as CAPO's stable adapter emits.
/// A cap of type(int256).max does not bind ("released").
contract PriceCapAdapter {
    event PriceCapUpdated(int256 priceCap);

    uint8 public constant RATIO_DECIMALS = 18;
    address public immutable BASE_TO_USD_AGGREGATOR;
    address public immutable RATIO_PROVIDER;
    address public immutable owner;
    uint8 public immutable decimals;
    string public description;
    int256 private priceCap;

    constructor(
        address baseToUsdAggregator,
        address ratioProvider,
        uint8 decimals_,
        string memory description_,
        int256 priceCap_
    ) {
        BASE_TO_USD_AGGREGATOR = baseToUsdAggregator;
        RATIO_PROVIDER = ratioProvider;
        owner = msg.sender;
        decimals = decimals_;
        description = description_;
        _setPriceCap(priceCap_);
    }

    function setPriceCap(int256 priceCap_) external {
        require(msg.sender == owner, "PriceCapAdapter: not the owner");
        _setPriceCap(priceCap_);
    }

    function getPriceCap() external view returns (int256) {
        return priceCap;
    }

    function getRatio() public view returns (int256) {
        return int256(IRateProvider(RATIO_PROVIDER).getRate());
    }

    function latestAnswer() public view returns (int256) {
        int256 basePrice = IBaseAggregator(BASE_TO_USD_AGGREGATOR).latestAnswer();
        int256 ratio = getRatio();
        if (basePrice <= 0 || ratio <= 0) {
            return 0;
        }
        int256 price = (basePrice * ratio) / int256(10 ** RATIO_DECIMALS);
        return price > priceCap ? priceCap : price;
    }

    function isCapped() external view returns (bool) {
        int256 basePrice = IBaseAggregator(BASE_TO_USD_AGGREGATOR).latestAnswer();
        return (basePrice * getRatio()) / int256(10 ** RATIO_DECIMALS) > priceCap;
    }

    function _setPriceCap(int256 priceCap_) private {
        require(priceCap_ > 0, "PriceCapAdapter: the cap must be positive");
        priceCap = priceCap_;
        emit PriceCapUpdated(priceCap_);
    }
}
