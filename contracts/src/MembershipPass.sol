// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @notice Demo/test ERC-721 membership pass: owner-mintable, transferable, and for sale at `price`
/// when the owner sets one (0, the default, means not for sale).
contract MembershipPass is ERC721, Ownable {
    /// @dev Bought passes are numbered from 2^128 up, so they never collide with ids the owner
    /// mints by hand (tests and tools pick those well below it).
    uint256 public constant FIRST_SOLD_ID = 1 << 128;

    uint256 public price;
    uint256 public sold;

    error NotForSale();
    error WrongPayment(uint256 sent, uint256 price);

    event PriceSet(uint256 price);

    constructor(string memory name_, string memory symbol_, address owner_)
        ERC721(name_, symbol_)
        Ownable(owner_)
    {}

    /// @dev _mint rather than _safeMint: passes may go to contract wallets that lack onERC721Received.
    function mint(address to, uint256 tokenId) external onlyOwner {
        _mint(to, tokenId);
    }

    function setPrice(uint256 price_) external onlyOwner {
        price = price_;
        emit PriceSet(price_);
    }

    /// @notice Buy one pass for exactly `price` wei; returns its id.
    function buy() external payable returns (uint256 tokenId) {
        if (price == 0) revert NotForSale();
        if (msg.value != price) revert WrongPayment(msg.value, price);
        tokenId = FIRST_SOLD_ID + sold;
        sold += 1;
        _mint(msg.sender, tokenId);
    }

    function withdraw(address payable to) external onlyOwner {
        (bool ok,) = to.call{value: address(this).balance}("");
        require(ok, "withdraw failed");
    }
}
